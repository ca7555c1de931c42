/*
 * pty_hangup: a pty slave (fd 71) whose master was closed: the kernel hung it up and removed
 * /dev/pts/N.  After restore the fd is still the hung-up slave: /proc/self/fd/71 reads
 * "/dev/pts/N (deleted)" with the same device number, read() gives end of file, write() and
 * tcgetattr() fail with EIO, as before the dump.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/ptyw.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define SLAVE 71

int main(int argc, char **argv)
{
	struct stat st, now;
	struct termios t;
	char path[64], want[80], link[128];
	char c;

	test_init(argc, argv);
	int m = pty_open_master(-1, path, sizeof(path));
	int s = open(path, O_RDWR | O_NOCTTY);
	if (s < 0 || dup2(s, SLAVE) != SLAVE || fstat(SLAVE, &st))
		test_abort("slave: %s", strerror(errno));
	close(s);
	close(m);
	snprintf(want, sizeof(want), "%s (deleted)", path);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		dup2(open("/dev/null", O_RDWR), SLAVE);
	ssize_t n = readlink("/proc/self/fd/71", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, want))
		fail("fd %d is \"%s\", want \"%s\"", SLAVE, link, want);
	if (fstat(SLAVE, &now) || now.st_rdev != st.st_rdev)
		fail("fd %d: device %#lx, want %#lx", SLAVE, (long)now.st_rdev, (long)st.st_rdev);
	if (read(SLAVE, &c, 1) != 0)
		fail("read on the hung-up slave: not end of file");
	errno = 0;
	if (write(SLAVE, "x", 1) != -1 || errno != EIO)
		fail("write on the hung-up slave: %s, want EIO", strerror(errno));
	errno = 0;
	if (tcgetattr(SLAVE, &t) != -1 || errno != EIO)
		fail("tcgetattr on the hung-up slave: %s, want EIO", strerror(errno));
	return test_finish();
}
