"""Credentials end to end (issue 3 point 5): a real C program (two threads) that drops from root
to uid/gid 4242 with supplementary groups, a reduced capability set (inheritable, permitted,
effective, ambient), a bounding set without CAP_SYS_ADMIN and securebits, dumped and restored by
crpy running as root.  Every thread's /proc status creds lines must be the same after the
restore; the program checks its own (plus securebits and dumpable) and writes PASS or FAIL.
Creds crpy cannot give (a capability it lacks itself) are refused before anything is forked.
"""

import os

import pytest
from tests.unit.crhelpers import SelfCheckingTarget, build_c, read_text, wait_for

CREDS_C = r"""
#define _GNU_SOURCE
/* creds test target (two threads): drops from root to uid/gid 4242 with groups 4243,4244, keeping only
 * CAP_NET_BIND_SERVICE (permitted, effective, inheritable, ambient) and CAP_CHOWN (permitted),
 * a bounding set without CAP_SYS_ADMIN, and securebits KEEP_CAPS|NO_SETUID_FIXUP; on SIGTERM it checks its
 * /proc/self/status creds lines and securebits are as before and writes PASS or FAIL. */
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/securebits.h>

static volatile sig_atomic_t term;
static void *idle(void *arg) { (void)arg; for (;;) pause(); return NULL; }
static void on_term(int s) { (void)s; term = 1; }

static void creds_lines(char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	buf[0] = 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7) ||
		    !strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs:", 11))
			strncat(buf, line, len - strlen(buf) - 1);
	fclose(f);
}

int main(int argc, char **argv)
{
	static char before[4096], after[4096];
	FILE *out = fopen(argv[1], "a");
	gid_t groups[] = {4243, 4244};
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	unsigned keep = 1u << CAP_NET_BIND_SERVICE, prm = keep | (1u << CAP_CHOWN);

	setvbuf(out, NULL, _IOLBF, 0);
	signal(SIGTERM, on_term);
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) || setgroups(2, groups) ||
	    prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) || setresgid(4242, 4242, 4242) ||
	    setresuid(4242, 4242, 4242)) {
		fprintf(out, "setup failed\nFAIL\n");
		return 1;
	}
	memset(d, 0, sizeof d);
	d[0].effective = keep; d[0].permitted = prm; d[0].inheritable = keep;
	if (syscall(SYS_capset, &h, d) || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0)) {
		fprintf(out, "caps setup failed\nFAIL\n");
		return 1;
	}
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	pthread_t t;
	pthread_create(&t, NULL, idle, NULL);   /* a second thread with the same creds */
	creds_lines(before, sizeof before);
	fprintf(out, "ready\n");
	while (!term)
		pause();
	creds_lines(after, sizeof after);
	int fails = 0;
	if (strcmp(before, after)) { fprintf(out, "creds changed:\n%s---\n%s", before, after); fails++; }
	if (prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) != (SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP)) { fprintf(out, "securebits %d\n", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)); fails++; }
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1) { fprintf(out, "not dumpable\n"); fails++; }
	fprintf(out, fails ? "FAIL\n" : "PASS\n");
	return fails;
}
"""
_KEYS = ("Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:")


@pytest.fixture(scope="module")
def creds_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("creds"), "creds", CREDS_C, "-O1", "-pthread")


def thread_creds(pid):
    out = {}
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        text = read_text(f"/proc/{pid}/task/{tid}/status")
        out[int(tid)] = [line for line in text.splitlines() if line.startswith(_KEYS)]
    return out


def test_task_of_another_uid_with_reduced_caps(creds_bin, tmp_path):
    with SelfCheckingTarget(creds_bin, tmp_path, ready=("ready", "FAIL")) as t:
        assert "ready" in read_text(t.out), read_text(t.out)
        pid = t.pid
        before = wait_for(lambda: (lambda c: c if len(c) == 2 else None)(thread_creds(pid)),
                          what="the second thread")
        assert any("4242" in line for line in before[pid])
        t.dump()
        t.restore()
        assert thread_creds(pid) == before
        t.verdict()


def test_creds_crpy_cannot_give_are_refused_before_the_fork():
    from crpy.errors import RestoreError
    from crpy.restore import creds

    mine = creds.own()
    lacking = [b for b in range(41) if not mine.cap_prm >> b & 1]
    if not lacking:
        pytest.fail("crpy has every capability here: nothing it lacks to test the refusal with")
    wanted = creds.Creds(uids=(4242,) * 4, gids=(4242,) * 4, groups=(), cap_inh=0,
                         cap_prm=1 << lacking[0], cap_eff=0, cap_bnd=mine.cap_bnd, cap_amb=0, secbits=0)
    with pytest.raises(RestoreError, match="capabilities crpy lacks"):
        creds.check(1234, wanted, mine)
