/*
 * dev_tty: /dev/tty held open (fd 71) by a session leader whose controlling terminal is a pty
 * slave it took with TIOCSCTTY and holds no other fd on; the master is fd 70; raw mode.  After
 * restore: fd 71 is still /dev/tty (5:0), the task's terminal (tty_nr) is the slave again, bytes
 * written at fd 71 come out of the master and bytes written into the master are read at fd 71.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/ptyw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#define MASTER 70
#define DEV_TTY 71

static int read_exactly(int fd, const char *want, size_t n)
{
	char buf[64];
	struct pollfd p = { fd, POLLIN, 0 };
	return poll(&p, 1, 2000) == 1 && read(fd, buf, sizeof(buf)) == (ssize_t)n && !memcmp(buf, want, n);
}

int main(int argc, char **argv)
{
	struct stat st;
	struct termios t;

	test_init(argc, argv);
	pty_open_master(MASTER, NULL, 0);
	int s = open(ptsname(MASTER), O_RDWR | O_NOCTTY);
	if (s < 0 || fstat(s, &st) || ioctl(s, TIOCSCTTY, 0))
		test_abort("slave as controlling terminal: %s", strerror(errno));
	close(s);
	int d = open("/dev/tty", O_RDWR);
	if (d < 0 || dup2(d, DEV_TTY) != DEV_TTY || tcgetattr(DEV_TTY, &t))
		test_abort("/dev/tty: %s", strerror(errno));
	close(d);
	cfmakeraw(&t);
	if (tcsetattr(DEV_TTY, TCSANOW, &t))
		test_abort("tcsetattr: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		write(MASTER, "x", 1);             /* a byte more than the check expects */
	struct stat dst;
	if (fstat(DEV_TTY, &dst) || !S_ISCHR(dst.st_mode) || dst.st_rdev != makedev(5, 0))
		fail("fd %d is not /dev/tty", DEV_TTY);
	if ((dev_t)test_tty_nr() != st.st_rdev)
		fail("controlling terminal %#lx, want the slave %#lx", (long)(dev_t)test_tty_nr(), (long)st.st_rdev);
	if (write(DEV_TTY, "out", 3) != 3 || !read_exactly(MASTER, "out", 3))
		fail("bytes written at /dev/tty do not come out of the master");
	if (write(MASTER, "in", 2) != 2 || !read_exactly(DEV_TTY, "in", 2))
		fail("bytes written into the master are not read at /dev/tty");
	return test_finish();
}
