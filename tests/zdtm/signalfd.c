/*
 * signalfd: a signalfd for SIGUSR1 and SIGRTMIN+2 (O_NONBLOCK) and a second, blocking one for
 * SIGUSR2 (close-on-exec), with the signals blocked.  Pending at dump time: SIGUSR1 and two
 * SIGRTMIN+2 queued with values 11 and 22.  After restore: the masks (fdinfo), the flags, and the
 * first signalfd reads SIGUSR1, then both SIGRTMIN+2 in order with their values, then EAGAIN; a
 * SIGUSR2 sent after restore is read from the second one.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int check_mask(int fd, unsigned long long want)
{
	char path[64], info[512], *p;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_whole(path, info, sizeof(info)) < 0 || !(p = strstr(info, "sigmask:")))
		return 0;
	return strtoull(p + 8, NULL, 16) == want;
}

int main(int argc, char **argv)
{
	sigset_t a, b, all;
	struct signalfd_siginfo si;
	union sigval v;
	int fa, fb;

	test_init(argc, argv);
	sigemptyset(&a);
	sigaddset(&a, SIGUSR1);
	sigaddset(&a, SIGRTMIN + 2);
	sigemptyset(&b);
	sigaddset(&b, SIGUSR2);
	sigemptyset(&all);
	sigaddset(&all, SIGUSR1);
	sigaddset(&all, SIGUSR2);
	sigaddset(&all, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &all, NULL);
	fa = signalfd(-1, &a, SFD_NONBLOCK);
	fb = signalfd(-1, &b, SFD_CLOEXEC);
	if (fa < 0 || fb < 0)
		test_abort("signalfd: %s", strerror(errno));
	test_daemon();
	kill(getpid(), SIGUSR1);
	v.sival_int = 11;
	sigqueue(getpid(), SIGRTMIN + 2, v);
	v.sival_int = 22;
	sigqueue(getpid(), SIGRTMIN + 2, v);

	test_waitsig();
	if (zdtm_break)
		read(fa, &si, sizeof(si));
	unsigned long long ma = (1ULL << (SIGUSR1 - 1)) | (1ULL << (SIGRTMIN + 2 - 1));
	if (!check_mask(fa, ma) || !check_mask(fb, 1ULL << (SIGUSR2 - 1)))
		fail("a signalfd's mask changed");
	if (!(fcntl(fa, F_GETFL) & O_NONBLOCK) || (fcntl(fb, F_GETFL) & O_NONBLOCK) ||
	    (fcntl(fa, F_GETFD) & FD_CLOEXEC) || !(fcntl(fb, F_GETFD) & FD_CLOEXEC))
		fail("a signalfd's flags changed");
	if (read(fa, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR1)
		fail("SIGUSR1 is no longer pending for the signalfd");
	for (int want = 11; want <= 22; want += 11)
		if (read(fa, &si, sizeof(si)) != sizeof(si) || (int)si.ssi_signo != SIGRTMIN + 2 || si.ssi_int != want)
			fail("SIGRTMIN+2 with value %d is not read in order (got signal %u value %d)", want,
			     si.ssi_signo, si.ssi_int);
	if (read(fa, &si, sizeof(si)) != -1 || errno != EAGAIN)
		fail("the signalfd reads more than was pending");
	kill(getpid(), SIGUSR2);
	if (read(fb, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR2)
		fail("the second signalfd does not read SIGUSR2");
	return test_finish();
}
