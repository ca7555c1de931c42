/*
 * pidfd_zombie: a pidfd (PIDFD_NONBLOCK) of a child that has exited with 42 and not been reaped.
 * After restore the child is still a zombie of the test, its pidfd names its pid (fdinfo), polls
 * readable, keeps its flags, and waitid(P_PIDFD) reaps the child with its exit status; then the
 * pid is gone.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/pidfdw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	pid_t kid;
	int of_kid;

	test_init(argc, argv);
	kid = test_fork();
	if (kid == 0)
		_exit(42);
	of_kid = open_pidfd(kid, PIDFD_NONBLOCK);
	if (of_kid < 0)
		test_abort("pidfd_open: %s", strerror(errno));
	while (proc_state(kid) != 'Z')
		usleep(1000);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		waitpid(kid, NULL, 0);
	struct pollfd p = { .fd = of_kid, .events = POLLIN };
	siginfo_t si = { 0 };
	if (proc_state(kid) != 'Z')
		fail("child %d is in state %c, not a zombie", kid, proc_state(kid));
	if (pidfd_pid(of_kid) != kid)
		fail("the pidfd names pid %d, not %d", pidfd_pid(of_kid), kid);
	if (!(fcntl(of_kid, F_GETFL) & O_NONBLOCK))
		fail("the pidfd lost O_NONBLOCK");
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		fail("the pidfd of the zombie is not readable");
	if (waitid(P_PIDFD, of_kid, &si, WEXITED) || si.si_pid != kid || si.si_code != CLD_EXITED || si.si_status != 42)
		fail("waitid(P_PIDFD): %s, pid %d code %d status %d", strerror(errno), si.si_pid, si.si_code, si.si_status);
	if (proc_state(kid) != '?')
		fail("child %d is still there (state %c) after waitid", kid, proc_state(kid));
	return test_finish();
}
