/*
 * fown: signal-driven I/O set up with F_SETOWN_EX, F_SETSIG and O_ASYNC.  The read end of a pipe
 * is owned by the process (F_OWNER_PID) with F_SETSIG SIGRTMIN+1; a pty master by the process
 * group (F_OWNER_PGRP) with SIGRTMIN+2; a second pipe's read end by the main thread
 * (F_OWNER_TID) with plain SIGIO (F_SETSIG 0), set while the effective uid was 4242 (the kernel
 * records uid 0, euid 4242 with the owner); a /dev/null fd has an owner but no O_ASYNC.
 * After restore: F_GETOWN_EX, F_GETSIG, F_GETOWNER_UIDS and O_ASYNC read back as set, and writing into each pipe
 * and into the pty slave delivers the right signal once, with si_fd naming the owned fd
 * (SIGRTMIN+n) or as SIGIO.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/ptyw.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got[3], last_fd[3];

static void on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int i = sig == SIGIO ? 0 : sig - SIGRTMIN;     /* 0: SIGIO, 1, 2: SIGRTMIN+1, +2 */
	if (i >= 0 && i < 3) {
		got[i]++;
		last_fd[i] = sig == SIGIO ? -1 : si->si_fd;
	}
}

#define F_GETOWNER_UIDS 17

static void own(int fd, int type, pid_t pid, int sig, int async)
{
	struct f_owner_ex o = { .type = type, .pid = pid };
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | (async ? O_ASYNC : 0)) ||
	    fcntl(fd, F_SETOWN_EX, &o) || fcntl(fd, F_SETSIG, sig))
		test_abort("owner of fd %d: %s", fd, strerror(errno));
}

static void check_owner(int fd, int type, pid_t pid, int sig, int async)
{
	struct f_owner_ex o = { -1, -1 };
	if (fcntl(fd, F_GETOWN_EX, &o) || o.type != type || o.pid != pid)
		fail("fd %d: owner type %d pid %d, want %d %d", fd, o.type, o.pid, type, pid);
	if (fcntl(fd, F_GETSIG) != sig)
		fail("fd %d: F_GETSIG %d, want %d", fd, fcntl(fd, F_GETSIG), sig);
	if (!!(fcntl(fd, F_GETFL) & O_ASYNC) != async)
		fail("fd %d: O_ASYNC %s", fd, async ? "lost" : "appeared");
}

/* write into wfd; signal i arrives once with si_fd == fd (fd < 0: SIGIO) */
static void check_delivery(int wfd, int i, int fd, const char *what)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int before = got[i];

	if (write(wfd, "x", 1) != 1)
		fail("%s: write: %s", what, strerror(errno));
	for (int n = 0; n < 200 && got[i] == before; n++)
		nanosleep(&ts, NULL);
	if (got[i] != before + 1)
		fail("%s: %d signals after a write, want 1", what, got[i] - before);
	else if (fd >= 0 && last_fd[i] != fd)
		fail("%s: si_fd %d, want %d", what, (int)last_fd[i], fd);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int p[2], q[2];

	test_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGIO, &sa, NULL);
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sigaction(SIGRTMIN + 2, &sa, NULL);
	if (pipe(p) || pipe(q))
		test_abort("pipe: %s", strerror(errno));
	int m = pty_open_master(-1, NULL, 0);
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	struct termios t;
	if (s < 0 || tcgetattr(s, &t))
		test_abort("pty slave: %s", strerror(errno));
	cfmakeraw(&t);
	tcsetattr(s, TCSANOW, &t);
	int null = open("/dev/null", O_RDONLY);
	own(p[0], F_OWNER_PID, getpid(), SIGRTMIN + 1, 1);
	own(m, F_OWNER_PGRP, getpgrp(), SIGRTMIN + 2, 1);
	if (setresuid(-1, 4242, -1))
		test_abort("setresuid: %s", strerror(errno));
	own(q[0], F_OWNER_TID, syscall(SYS_gettid), 0, 1);
	if (setresuid(-1, 0, -1))
		test_abort("setresuid back: %s", strerror(errno));
	own(null, F_OWNER_PID, getpid(), SIGRTMIN + 1, 0);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fcntl(p[0], F_SETSIG, 0);
	check_owner(p[0], F_OWNER_PID, getpid(), SIGRTMIN + 1, 1);
	check_owner(m, F_OWNER_PGRP, getpgrp(), SIGRTMIN + 2, 1);
	check_owner(q[0], F_OWNER_TID, syscall(SYS_gettid), 0, 1);
	check_owner(null, F_OWNER_PID, getpid(), SIGRTMIN + 1, 0);
	unsigned uids[2] = { 1, 1 };
	if (fcntl(q[0], F_GETOWNER_UIDS, uids) || uids[0] != 0 || uids[1] != 4242)
		fail("owner uid/euid %u/%u, want 0/4242", uids[0], uids[1]);
	check_delivery(p[1], 1, p[0], "pipe owned by the process");
	check_delivery(s, 2, m, "pty master owned by the group");
	check_delivery(q[1], 0, -1, "pipe owned by the thread (SIGIO)");
	return test_finish();
}
