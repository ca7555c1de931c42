/*
 * pidfd: the parent holds a pidfd of its child (PIDFD_NONBLOCK) and one of itself (close-on-exec
 * cleared) that the child inherited; the child also opened a pidfd of its parent.  After restore: each pidfd names the same pid
 * (fdinfo), the flags are kept, a signal sent through the child's pidfd reaches the child, the
 * child's pidfd is not readable while the child lives, becomes readable when it exits, and
 * waitid(P_PIDFD) reaps it with its exit status; the child checks its pidfd of the parent.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/pidfdw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static volatile sig_atomic_t got_usr2;
static void on_usr2(int sig) { (void)sig; got_usr2 = 1; }

int main(int argc, char **argv)
{
	int of_kid, of_self, status;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	of_self = open_pidfd(getpid(), 0);
	kid = test_fork();
	if (kid == 0) {
		int of_parent = open_pidfd(getppid(), 0);
		signal(SIGUSR2, on_usr2);
		test_usr1_wait();                     /* the parent restored and checked */
		while (!got_usr2)
			usleep(1000);
		_exit(of_parent >= 0 && pidfd_pid(of_parent) == getppid() && pidfd_pid(of_self) == getppid() ? 42 : 1);
	}
	of_kid = open_pidfd(kid, PIDFD_NONBLOCK);
	if (of_kid < 0 || of_self < 0)
		test_abort("pidfd_open: %s", strerror(errno));
	fcntl(of_self, F_SETFD, 0);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fcntl(of_kid, F_SETFL, 0);
	if (pidfd_pid(of_kid) != kid || pidfd_pid(of_self) != getpid())
		fail("a pidfd names pid %d / %d, not %d / %d", pidfd_pid(of_kid), pidfd_pid(of_self), kid, getpid());
	if (!(fcntl(of_kid, F_GETFL) & O_NONBLOCK) || (fcntl(of_self, F_GETFL) & O_NONBLOCK) ||
	    !(fcntl(of_kid, F_GETFD) & FD_CLOEXEC) || (fcntl(of_self, F_GETFD) & FD_CLOEXEC))
		fail("pidfd flags changed");
	if (readable(of_kid))
		fail("the child's pidfd is readable while the child lives");
	kill(kid, SIGUSR1);
	if (syscall(SYS_pidfd_send_signal, of_kid, SIGUSR2, NULL, 0))
		fail("pidfd_send_signal: %s", strerror(errno));
	for (int i = 0; i < 3000 && !readable(of_kid); i++)
		usleep(1000);
	if (!readable(of_kid))
		fail("the child's pidfd did not become readable when it exited");
	siginfo_t si = { 0 };
	if (waitid(P_PIDFD, of_kid, &si, WEXITED))
		fail("waitid(P_PIDFD): %s", strerror(errno));
	else if (si.si_pid != kid || si.si_status != 42)
		fail("the child (pid %d) exited with %d: its pidfd of the parent is wrong", si.si_pid, si.si_status);
	(void)status;
	return test_finish();
}
