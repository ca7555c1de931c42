/*
 * pidfd_shared: a pidfd of child A, opened by the parent and inherited by child B: the restore
 * opens what several tasks share before it forks A, so crpy refuses it: the dump must fail in
 * one line naming the pidfd and leave the three tasks untouched (tests/zdtm/desc.py:
 * dump_fails).  Then the pidfd still names A, in the parent and in B.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/pidfdw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	pid_t kids[2];
	int of_a;

	test_init(argc, argv);
	test_usr1_init();
	kids[0] = test_fork();
	if (kids[0] == 0) {
		test_usr1_wait();
		_exit(0);
	}
	of_a = open_pidfd(kids[0], 0);
	if (of_a < 0)
		test_abort("pidfd_open: %s", strerror(errno));
	kids[1] = test_fork();
	if (kids[1] == 0) {
		test_usr1_wait();
		_exit(pidfd_pid(of_a) == kids[0] ? 0 : 1);
	}
	test_write_pids(kids, 2);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(of_a);
	if (pidfd_pid(of_a) != kids[0])
		fail("the parent's pidfd no longer names child A");
	for (int i = 1; i >= 0; i--) {            /* B first: it looks at A */
		kill(kids[i], SIGUSR1);
		int code = test_reap(kids[i], i ? "child B" : "child A");
		if (code > 0)
			fail("child %d: exit %d", i, code);
	}
	return test_finish();
}
