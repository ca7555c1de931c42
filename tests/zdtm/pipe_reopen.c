/*
 * pipe_reopen: one pipe, four open file descriptions.  Besides pipe()'s two ends, the read end
 * is opened again through /proc/self/fd/N (O_NONBLOCK on this description only) and the pipe
 * once more O_RDWR (blocking).  6000 bytes are in flight.  After restore: each description has
 * its own flags (O_NONBLOCK only on the reopened reader; setting it on one does not show on
 * another), all four are one pipe (one inode; a byte written at any writer is read at any
 * reader), the O_RDWR description can still read and write, and every byte comes back in order.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INFLIGHT 6000

static int reopen(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags);
}

static int nonblock(int fd)
{
	return !!(fcntl(fd, F_GETFL) & O_NONBLOCK);
}

int main(int argc, char **argv)
{
	static unsigned char buf[INFLIGHT];
	int p[2];
	struct stat st[4];

	test_init(argc, argv);
	if (pipe(p))
		test_abort("pipe: %s", strerror(errno));
	int r2 = reopen(p[0], O_RDONLY | O_NONBLOCK);
	int rw = reopen(p[1], O_RDWR);
	if (r2 < 0 || rw < 0)
		test_abort("reopen: %s", strerror(errno));
	fill_pattern(buf, INFLIGHT, 0x4242);
	if (write(rw, buf, 1000) != 1000 || write(p[1], buf + 1000, INFLIGHT - 1000) != INFLIGHT - 1000)
		test_abort("write: %s", strerror(errno));
	memset(buf, 0, sizeof(buf));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fcntl(p[0], F_SETFL, O_NONBLOCK);
	int fds[4] = { p[0], p[1], r2, rw };
	for (int i = 0; i < 4; i++)
		if (fstat(fds[i], &st[i]))
			fail("fstat fd %d: %s", fds[i], strerror(errno));
	for (int i = 1; i < 4; i++)
		if (st[i].st_ino != st[0].st_ino || st[i].st_dev != st[0].st_dev)
			fail("fd %d is not on the same pipe as fd %d", fds[i], p[0]);
	if (nonblock(p[0]) || nonblock(p[1]) || !nonblock(r2) || nonblock(rw))
		fail("O_NONBLOCK per description: %d %d %d %d, want 0 0 1 0",
		     nonblock(p[0]), nonblock(p[1]), nonblock(r2), nonblock(rw));
	if ((fcntl(p[0], F_GETFL) & O_ACCMODE) != O_RDONLY || (fcntl(p[1], F_GETFL) & O_ACCMODE) != O_WRONLY ||
	    (fcntl(r2, F_GETFL) & O_ACCMODE) != O_RDONLY || (fcntl(rw, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("access modes changed");
	fcntl(r2, F_SETFL, 0);                      /* one description's flags: not the others' */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	if (nonblock(r2) || !nonblock(p[0]) || nonblock(rw))
		fail("setting O_NONBLOCK on one description changed another");
	fcntl(p[0], F_SETFL, 0);
	/* every byte back in order, read through three different readers */
	if (read(r2, buf, 100) != 100 || read(rw, buf + 100, 900) != 900)
		fail("short read at the reopened readers");
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	size_t got = 1000 + read_full(p[0], buf + 1000, INFLIGHT - 1000);
	if (got != INFLIGHT)
		fail("read %zu bytes of %d in flight", got, INFLIGHT);
	else if (check_pattern(buf, INFLIGHT, 0x4242) >= 0)
		fail("byte %ld of the pipe differs", check_pattern(buf, INFLIGHT, 0x4242));
	char c;
	if (read(p[0], &c, 1) != -1 || errno != EAGAIN)
		fail("more bytes in the pipe than were in flight");
	if (write(rw, "a", 1) != 1 || read(r2, &c, 1) != 1 || c != 'a')
		fail("the O_RDWR description does not write into the pipe");
	if (write(p[1], "b", 1) != 1 || read(rw, &c, 1) != 1 || c != 'b')
		fail("the O_RDWR description does not read from the pipe");
	return test_finish();
}
