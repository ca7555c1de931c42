/*
 * pidfd_dead: pidfds of a child that has exited and been reaped (fdinfo "Pid: -1"), one of them
 * PIDFD_NONBLOCK.  After restore each still says the task is gone: fdinfo Pid -1, polls readable,
 * waitid(P_PIDFD) gives ECHILD, pidfd_send_signal ESRCH, and the flags are as they were.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/pidfdw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void check_gone(int fd, int nonblock, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	siginfo_t si;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || !!(fl & O_NONBLOCK) != nonblock) {
		fail("%s: flags %#x, O_NONBLOCK should be %d", what, fl, nonblock);
		return;
	}
	if (pidfd_pid(fd) != -1)
		fail("%s: fdinfo does not say Pid: -1", what);
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		fail("%s: the pidfd of the reaped child is not readable", what);
	if (waitid(P_PIDFD, fd, &si, WEXITED | WNOHANG) != -1 || errno != ECHILD)
		fail("%s: waitid on the reaped child's pidfd: %s, not ECHILD", what, strerror(errno));
	if (syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) != -1 || errno != ESRCH)
		fail("%s: pidfd_send_signal to the reaped child: %s, not ESRCH", what, strerror(errno));
}

int main(int argc, char **argv)
{
	int of_kid, of_kid_nb, status;
	pid_t kid;

	test_init(argc, argv);
	kid = test_fork();
	if (kid == 0)
		_exit(0);
	of_kid = open_pidfd(kid, 0);
	of_kid_nb = open_pidfd(kid, PIDFD_NONBLOCK);
	if (of_kid < 0 || of_kid_nb < 0 || waitpid(kid, &status, 0) != kid)
		test_abort("pidfd_open/waitpid: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(of_kid);
	check_gone(of_kid, 0, "pidfd");
	check_gone(of_kid_nb, 1, "nonblocking pidfd");
	return test_finish();
}
