/*
 * pidfd_dead: a pidfd of a child that has exited and been reaped (fdinfo "Pid: -1"): crpy
 * cannot make that struct pid again, so the dump must fail in one line naming the pidfd and
 * leave the task untouched (tests/zdtm/desc.py: dump_fails).  Then the pidfd still says so:
 * readable, waitid(P_PIDFD) gives ECHILD.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int of_kid, status;
	pid_t kid;

	test_init(argc, argv);
	kid = fork();
	if (kid == 0)
		_exit(0);
	of_kid = syscall(SYS_pidfd_open, kid, 0);
	if (of_kid < 0 || waitpid(kid, &status, 0) != kid)
		test_abort("pidfd_open/waitpid: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(of_kid);
	struct pollfd p = { .fd = of_kid, .events = POLLIN };
	siginfo_t si;
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		fail("the pidfd of the reaped child is not readable");
	if (waitid(P_PIDFD, of_kid, &si, WEXITED | WNOHANG) != -1 || errno != ECHILD)
		fail("waitid on the reaped child's pidfd: %s, not ECHILD", strerror(errno));
	return test_finish();
}
