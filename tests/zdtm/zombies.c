/*
 * zombies: three children that ended before the dump and were not reaped: exit 7, exit 42 and
 * killed by SIGUSR2.  After restore they are still zombies of the test, and the test reaps each
 * with waitpid and sees its own status.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 3

int main(int argc, char **argv)
{
	pid_t kids[N];
	int want[N];

	test_init(argc, argv);
	for (int i = 0; i < N; i++) {
		kids[i] = test_fork();
		if (kids[i] == 0) {
			if (i == 2)
				raise(SIGUSR2);
			_exit(i == 0 ? 7 : 42);
		}
	}
	want[0] = 7 << 8;
	want[1] = 42 << 8;
	want[2] = SIGUSR2;
	for (int i = 0; i < N; i++)
		wait_proc_state(kids[i], 'Z');
	test_write_pids(kids, N);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		waitpid(kids[1], NULL, 0);
	for (int i = 0; i < N; i++) {
		int status = -1;
		expect_proc_state(kids[i], 'Z');
		pid_t got = waitpid(kids[i], &status, WNOHANG);
		if (got != kids[i])
			fail("waitpid(%d) = %d (%s)", kids[i], got, got < 0 ? strerror(errno) : "not ready");
		else if (status != want[i])
			fail("child %d: status 0x%x, want 0x%x", kids[i], status, want[i]);
	}
	return test_finish();
}
