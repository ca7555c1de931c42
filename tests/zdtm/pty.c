/*
 * pty: a pseudo-terminal pair held by the test (not its controlling terminal): raw termios with a
 * few distinctive settings, a 33x111 window, 9 bytes written to the master waiting for the slave's
 * reader and 10 written to the slave waiting for the master's.  After restore: termios and window
 * size are the same, both sides read their waiting bytes, and the pair still carries data.
 */
#include "lib/zdtmtst.h"
#include "lib/ptyw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#define MASTER 70
#define SLAVE 71

static ssize_t read_wait(int fd, char *buf, size_t size)
{
	struct pollfd p = { fd, POLLIN, 0 };
	if (poll(&p, 1, 2000) != 1)
		return -1;
	return read(fd, buf, size);
}

int main(int argc, char **argv)
{
	struct termios want, now;
	struct winsize ws = { 33, 111, 0, 0 }, ws_now;
	char buf[64];
	int mflags, sflags;

	test_init(argc, argv);
	pty_open_master(MASTER, NULL, 0);
	int s = open(ptsname(MASTER), O_RDWR | O_NOCTTY);
	if (s < 0 || dup2(s, SLAVE) < 0)
		test_abort("open %s: %s", ptsname(MASTER), strerror(errno));
	close(s);
	tcgetattr(SLAVE, &want);
	cfmakeraw(&want);
	want.c_cc[VMIN] = 1;
	want.c_cc[VTIME] = 0;
	want.c_cc[VINTR] = 7;
	cfsetspeed(&want, B57600);
	if (tcsetattr(SLAVE, TCSANOW, &want) || ioctl(SLAVE, TIOCSWINSZ, &ws))
		test_abort("tcsetattr: %s", strerror(errno));
	tcgetattr(SLAVE, &want);
	if (write(MASTER, "to-slave!", 9) != 9 || write(SLAVE, "to-master!", 10) != 10)
		test_abort("write: %s", strerror(errno));
	mflags = fcntl(MASTER, F_GETFL);
	sflags = fcntl(SLAVE, F_GETFL);
	test_daemon();

	test_waitsig();
	if (fcntl(MASTER, F_GETFL) != mflags || fcntl(SLAVE, F_GETFL) != sflags)
		fail("file flags: master %#x slave %#x, were %#x and %#x", fcntl(MASTER, F_GETFL),
		     fcntl(SLAVE, F_GETFL), mflags, sflags);
	if (zdtm_break)
		tcflush(SLAVE, TCIFLUSH);
	if (tcgetattr(SLAVE, &now))
		fail("tcgetattr: %s", strerror(errno));
	else if (now.c_iflag != want.c_iflag || now.c_oflag != want.c_oflag || now.c_cflag != want.c_cflag ||
		 now.c_lflag != want.c_lflag || memcmp(now.c_cc, want.c_cc, sizeof(now.c_cc)) ||
		 cfgetospeed(&now) != cfgetospeed(&want))
		fail("termios changed (lflag %#x was %#x, cflag %#x was %#x)", now.c_lflag, want.c_lflag,
		     now.c_cflag, want.c_cflag);
	if (ioctl(SLAVE, TIOCGWINSZ, &ws_now) || ws_now.ws_row != 33 || ws_now.ws_col != 111)
		fail("window size %dx%d, want 33x111", ws_now.ws_row, ws_now.ws_col);
	ssize_t n = read_wait(SLAVE, buf, sizeof(buf));
	if (n != 9 || memcmp(buf, "to-slave!", 9))
		fail("the slave read %zd bytes, not the 9 waiting", n);
	n = read_wait(MASTER, buf, sizeof(buf));
	if (n != 10 || memcmp(buf, "to-master!", 10))
		fail("the master read %zd bytes, not the 10 waiting", n);
	if (write(MASTER, "x", 1) != 1 || read_wait(SLAVE, buf, 1) != 1 || buf[0] != 'x')
		fail("the pair does not carry data after restore");
	return test_finish();
}
