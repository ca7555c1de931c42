/*
 * pty_child: two pty pairs split between a parent and its child, with bytes waiting both ways.
 *
 * Pair A is what a program running its child on a pty has: the parent holds the master (fd 70),
 * the child leads its own session with the slave as controlling terminal and as stdin/stdout,
 * canonical mode without echo.  Pair B the other way round: the parent holds the slave (fd 72,
 * raw), the child the master (fd 73).  Before the dump the child has written a line to its
 * stdout and bytes into master B, the parent a line into master A and bytes into slave B; nobody
 * has read them.  After restore each side reads exactly the bytes waiting for it, the child
 * still has slave A as controlling terminal (tcgetsid) with its own group in the foreground, and
 * pair A still carries the child's verdict line to the parent.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MASTER_A 70
#define SLAVE_B 72
#define MASTER_B 73


static ssize_t read_wait(int fd, char *buf, size_t size, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	if (poll(&p, 1, ms) != 1)
		return -1;
	return read(fd, buf, size);
}

/* Exactly `want` is waiting on fd: one read gets it, and nothing more follows. */
static int reads_exactly(int fd, const char *want)
{
	char buf[64];
	ssize_t n = read_wait(fd, buf, sizeof(buf), 2000);
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n))
		return 0;
	return read_wait(fd, buf, sizeof(buf), 100) < 0;
}

/* The child's checks after restore; its verdict goes to the parent through pair A. */
static int child_check(void)
{
	if (tcgetsid(0) != getpid())
		return 1;                      /* slave A is no longer our controlling terminal */
	if (tcgetpgrp(0) != getpgrp())
		return 2;                      /* our group is not in the foreground */
	if (!reads_exactly(0, "to-child\n"))
		return 3;
	if (!reads_exactly(MASTER_B, "b-to-master"))
		return 4;
	return 0;
}

static void child(const char *slave_a)
{
	struct termios t;

	close(MASTER_A);
	close(SLAVE_B);
	if (setsid() < 0)
		_exit(20);
	int s = open(slave_a, O_RDWR);         /* a session leader without a terminal: it becomes ours */
	if (s < 0 || dup2(s, 0) < 0 || dup2(s, 1) < 0)
		_exit(21);
	close(s);
	if (tcgetattr(0, &t))
		_exit(22);
	t.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL);
	if (tcsetattr(0, TCSANOW, &t))
		_exit(23);
	if (write(1, "from-child\n", 11) != 11 || write(MASTER_B, "b-from-master", 13) != 13)
		_exit(24);
	kill(getppid(), SIGUSR1);
	test_usr1_wait();
	int bad = child_check();
	if (bad)
		dprintf(1, "bad %d\n", bad);
	else
		dprintf(1, "ok\n");
	_exit(bad);
}

static int open_pair(int master_fd, int slave_fd)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m) || dup2(m, master_fd) < 0)
		return -1;
	close(m);
	if (slave_fd < 0)
		return 0;
	int s = open(ptsname(master_fd), O_RDWR | O_NOCTTY);
	if (s < 0 || dup2(s, slave_fd) < 0)
		return -1;
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *why[] = { "", "slave A is not its controlling terminal",
				     "its group is not in the foreground", "it did not read the line waiting for it",
				     "master B did not read the bytes waiting for it" };
	struct termios raw;
	char slave_a[64];

	test_init(argc, argv);
	test_usr1_init();
	if (open_pair(MASTER_A, -1) || open_pair(MASTER_B, SLAVE_B))
		test_abort("pty: %s", strerror(errno));
	strncpy(slave_a, ptsname(MASTER_A), sizeof(slave_a) - 1);
	slave_a[sizeof(slave_a) - 1] = 0;
	tcgetattr(SLAVE_B, &raw);
	cfmakeraw(&raw);
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(SLAVE_B, TCSANOW, &raw))
		test_abort("tcsetattr: %s", strerror(errno));
	pid_t kid = test_fork();
	if (kid == 0)
		child(slave_a);
	close(MASTER_B);
	test_usr1_wait();
	if (write(MASTER_A, "to-child\n", 9) != 9 || write(SLAVE_B, "b-to-master", 11) != 11)
		test_abort("write: %s", strerror(errno));
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		char c;
		read_wait(MASTER_A, &c, 1, 2000);
	}
	if (getsid(kid) != kid)
		fail("the child leads session %d, not its own", getsid(kid));
	if (!reads_exactly(MASTER_A, "from-child\r\n"))
		fail("master A did not read exactly the child's line waiting for it");
	if (!reads_exactly(SLAVE_B, "b-from-master"))
		fail("slave B did not read exactly the bytes waiting for it");
	kill(kid, SIGUSR1);
	char line[64] = "";
	ssize_t n = read_wait(MASTER_A, line, sizeof(line) - 1, 5000);
	line[n > 0 ? n : 0] = 0;
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child: %s (exit %d)", code < 5 ? why[code] : "setup failed", code);
	else if (code == 0 && strcmp(line, "ok\r\n"))
		fail("pair A did not carry the child's verdict after restore (read \"%s\")", line);
	return test_finish();
}
