/*
 * vfork: a child blocked in vfork() whose vfork child has not exec'd yet (it sleeps, sharing the
 * child's memory).  crpy cannot dump that: the dump must fail at once with one line and leave
 * the tree untouched (tests/zdtm/desc.py: dump_fails).  Then the vfork child is released with
 * SIGUSR1 and exits 6; its parent comes back from vfork(), reaps it and exits 6 + 10.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t vchild;      /* written by the vfork child into the memory it shares */

static void on_usr1(int sig)
{
	(void)sig;
	_exit(6);
}

int main(int argc, char **argv)
{
	pid_t kid, pids[2];
	int status;

	test_init(argc, argv);
	kid = test_fork();
	if (kid == 0) {
		signal(SIGUSR1, on_usr1);
		pid_t v = vfork();
		if (v == 0) {
			vchild = (pid_t)syscall(SYS_getpid);
			for (;;)
				syscall(SYS_pause);
		}
		if (v < 0 || waitpid(v, &status, 0) != v || !WIFEXITED(status))
			_exit(1);
		_exit(WEXITSTATUS(status) + 10);
	}
	/* the vfork child says its pid through the memory it shares with the test's child: read it
	 * from /proc instead (the test does not share that memory) */
	pid_t v = 0;
	for (int n = 0; n < 5000 && !v; n++) {
		char path[64], buf[64];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", kid, kid);
		if (read_whole(path, buf, sizeof(buf)) > 0)
			v = atoi(buf);
		else
			usleep(1000);
	}
	if (!v)
		test_abort("the vfork child of %d did not appear", kid);
	while (proc_state(kid) != 'D' || proc_state(v) != 'S')
		usleep(1000);
	pids[0] = kid;
	pids[1] = v;
	test_write_pids(pids, 2);
	test_daemon();

	test_waitsig();
	if (proc_state(kid) != 'D')
		fail("the child %d is in state %c, no longer in vfork (D)", kid, proc_state(kid));
	if (zdtm_break)
		kill(v, SIGKILL);
	kill(v, SIGUSR1);
	int code = test_reap(kid, "the child");
	if (code >= 0 && code != 16)
		fail("the child exited %d, want 16 (its vfork child exited 6)", code);
	return test_finish();
}
