/*
 * membarrier: membarrier() registrations of two address spaces.  The test registers for private
 * expedited, private expedited rseq and global expedited barriers; its child for private
 * expedited sync-core only.  After restore each still has exactly its registrations: the
 * kernel's list (MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3+: the same as before the dump)
 * and the barriers themselves (a private expedited barrier of a kind not registered for fails
 * with EPERM: the sync-core child's plain one too, though the list shows it).
 * ZDTM_BREAK: the test re-executes itself (exec drops every registration) and checks there.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CMD_GLOBAL_EXPEDITED (1 << 1)
#define CMD_PRIVATE_EXPEDITED (1 << 3)
#define CMD_PRIVATE_EXPEDITED_SYNC_CORE (1 << 5)
#define CMD_PRIVATE_EXPEDITED_RSEQ (1 << 7)
#define CMD_GET_REGISTRATIONS (1 << 9)
#define REGISTER(cmd) ((cmd) << 1)      /* MEMBARRIER_CMD_REGISTER_xxx */

#define PARENT_MASK (REGISTER(CMD_GLOBAL_EXPEDITED) | REGISTER(CMD_PRIVATE_EXPEDITED) | \
		     REGISTER(CMD_PRIVATE_EXPEDITED_RSEQ))
#define CHILD_MASK REGISTER(CMD_PRIVATE_EXPEDITED_SYNC_CORE)

static long membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

static int register_all(long mask)
{
	for (int bit = 0; bit < 16; bit++)
		if ((mask & (1L << bit)) && membarrier(1 << bit))
			return -1;
	return 0;
}

/* 0 when this mm has exactly the registrations `mask` gave it (the kernel listed `listed` for
 * them then: -1 if it cannot list); else says why (fail() in the test, nothing in the child) */
static int check(const char *who, long mask, long listed, int report)
{
	static const int barriers[] = { CMD_PRIVATE_EXPEDITED, CMD_PRIVATE_EXPEDITED_SYNC_CORE,
					CMD_PRIVATE_EXPEDITED_RSEQ };
	int bad = 0;
	long got = membarrier(CMD_GET_REGISTRATIONS);

	if (got != listed) {
		if (report)
			fail("%s: registrations listed %#lx, want %#lx", who, got, listed);
		bad = 1;
	}
	for (unsigned i = 0; i < sizeof(barriers) / sizeof(barriers[0]); i++) {
		long r = membarrier(barriers[i]);
		int want_ok = !!(mask & REGISTER(barriers[i]));
		if ((r == 0) != want_ok) {
			if (report)
				fail("%s: barrier %#x returned %ld (%s), want %s", who, barriers[i], r,
				     r ? strerror(errno) : "ok", want_ok ? "ok" : "EPERM");
			bad = 1;
		}
	}
	return bad;
}

int main(int argc, char **argv)
{
	pid_t kid;
	long listed;
	char listed_text[32];

	if (argc == 3 && !strcmp(argv[1], "--recheck")) {   /* ZDTM_BREAK: after exec */
		check("the test after exec", PARENT_MASK, strtol(argv[2], NULL, 0), 1);
		return test_finish();
	}
	if (argc == 2 && !strcmp(argv[1], "--child")) {     /* SIGUSR1 is blocked (test_usr1_init) */
		sigset_t usr1;
		int sig;
		long listed;
		if (register_all(CHILD_MASK))
			_exit(3);
		listed = membarrier(CMD_GET_REGISTRATIONS);
		kill(getppid(), SIGUSR1);
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		sigwait(&usr1, &sig);
		_exit(check("the child", CHILD_MASK, listed, 0));
	}
	test_init(argc, argv);
	if (membarrier(0) < 0)
		test_abort("membarrier(MEMBARRIER_CMD_QUERY): %s", strerror(errno));
	if (register_all(PARENT_MASK))
		test_abort("membarrier registration: %s", strerror(errno));
	listed = membarrier(CMD_GET_REGISTRATIONS);
	snprintf(listed_text, sizeof(listed_text), "%ld", listed);
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		/* a fresh address space: exec drops what fork kept */
		execl("/proc/self/exe", argv[0], "--child", (char *)NULL);
		_exit(2);
	}
	test_usr1_wait();
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	kill(kid, SIGUSR1);
	if (zdtm_break) {
		execl("/proc/self/exe", argv[0], "--recheck", listed_text, (char *)NULL);
		fail("exec: %s", strerror(errno));
	}
	check("the test", PARENT_MASK, listed, 1);
	int code = test_reap(kid, "the child");
	if (code > 0)
		fail("the child's registrations differ (exit %d), want exactly %#x", code, CHILD_MASK);
	return test_finish();
}
