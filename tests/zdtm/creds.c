/*
 * creds: a child running as another user with a reduced capability set.  It takes groups
 * 1000,1001, gids 4243/4244/4245, uids 4242/4243/4244 (PR_SET_KEEPCAPS), permitted and effective
 * CAP_KILL and CAP_NET_BIND_SERVICE, inheritable CAP_KILL, and drops CAP_SYS_ADMIN from its bounding
 * set.  After restore it compares its Uid, Gid, Groups and Cap* lines of /proc/self/status with the
 * ones it recorded, and exits 0 or 1; the test (root) collects that verdict.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *keys[] = { "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
			      "CapAmb:", "NoNewPrivs:" };
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
static char before[NKEYS][256];

static void status_lines(char out[NKEYS][256])
{
	static char buf[8192];
	read_whole("/proc/self/status", buf, sizeof(buf));
	for (size_t k = 0; k < NKEYS; k++) {
		char *l = strstr(buf, keys[k]), *e;
		out[k][0] = 0;
		if (l && (e = strchr(l, '\n')))
			snprintf(out[k], 256, "%.*s", (int)(e - l), l);
	}
}

static int set_caps(uint32_t eff, uint32_t prm, uint32_t inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { eff, prm, inh }, { 0, 0, 0 } };
	return (int)syscall(SYS_capset, &h, d);
}

static void child(int ready)
{
	gid_t groups[2] = { 1000, 1001 };
	uint32_t caps = (1u << CAP_KILL) | (1u << CAP_NET_BIND_SERVICE);

	if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) || setgroups(2, groups) ||
	    setresgid(4243, 4244, 4245) || prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) ||
	    setresuid(4242, 4243, 4244) || set_caps(caps, caps, 1u << CAP_KILL))
		_exit(90);
	status_lines(before);
	if (write(ready, "R", 1) != 1)
		_exit(91);
	close(ready);
	test_usr1_wait();
	if (zdtm_break)
		set_caps(1u << CAP_KILL, caps, 1u << CAP_KILL);
	char now[NKEYS][256];
	status_lines(now);
	for (size_t k = 0; k < NKEYS; k++)
		if (strcmp(now[k], before[k])) {
			test_msg("child: \"%s\", was \"%s\"", now[k], before[k]);
			_exit(1);
		}
	if (getuid() != 4242 || geteuid() != 4243)
		_exit(2);
	_exit(0);
}

int main(int argc, char **argv)
{
	int p[2], status;
	char c;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	if (pipe(p))
		test_abort("pipe: %s", strerror(errno));
	kid = test_fork();
	if (kid == 0) {
		close(p[0]);
		child(p[1]);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		test_abort("the child could not take its credentials (status of waitpid: %d)",
			   waitpid(kid, &status, 0) == kid ? WEXITSTATUS(status) : -1);
	close(p[0]);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "the child");
	if (code > 0)
		fail("the child found its credentials changed (exit %d, see above)", code);
	return test_finish();
}
