/*
 * fifo_unlinked: a FIFO unlinked while open three times: read-write (fd 40), read-only
 * non-blocking (41) and write-only (42), with 3000 bytes in flight.  After restore: all three
 * fds are on one unlinked FIFO ("(deleted)", nlink 0), the bytes in flight come out in order and
 * nothing more, and a write on 42 is read on 41 (still one pipe).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RW 40
#define RD 41
#define WR 42
#define LEN 3000

static unsigned char buf[LEN], got[LEN + 1];

int main(int argc, char **argv)
{
	char fdpath[64], link[4096];
	struct stat st[3];

	test_init(argc, argv);
	fill_pattern(buf, LEN, 0xf1f0);
	if (mkfifo(test_path(".fifo"), 0640))
		test_abort("mkfifo: %s", strerror(errno));
	int rw = open(test_path(".fifo"), O_RDWR), rd = open(test_path(".fifo"), O_RDONLY | O_NONBLOCK),
	    wr = open(test_path(".fifo"), O_WRONLY);
	if (rw < 0 || rd < 0 || wr < 0 || dup2(rw, RW) < 0 || dup2(rd, RD) < 0 || dup2(wr, WR) < 0)
		test_abort("open: %s", strerror(errno));
	close(rw), close(rd), close(wr);
	if (write(WR, buf, LEN) != LEN || unlink(test_path(".fifo")))
		test_abort("write/unlink: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		read(RD, got, 1);
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", RD);
	ssize_t n = readlink(fdpath, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (!strstr(link, "(deleted)"))
		fail("fd %d is \"%s\", not an unlinked FIFO", RD, link);
	if (fstat(RW, &st[0]) || fstat(RD, &st[1]) || fstat(WR, &st[2]))
		fail("fstat: %s", strerror(errno));
	else if (!S_ISFIFO(st[1].st_mode) || st[1].st_nlink != 0 || (st[1].st_mode & 0777) != 0640 ||
		 st[0].st_ino != st[1].st_ino || st[2].st_ino != st[1].st_ino)
		fail("not one unlinked FIFO of mode 640 (mode %o nlink %lu)", st[1].st_mode, (unsigned long)st[1].st_nlink);
	int fl = fcntl(RD, F_GETFL);
	if ((fl & O_ACCMODE) != O_RDONLY || !(fl & O_NONBLOCK) || (fcntl(WR, F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("fd %d flags %#o, fd %d flags %#o", RD, fl, WR, fcntl(WR, F_GETFL));
	n = read(RD, got, LEN + 1);
	if (n != LEN || memcmp(got, buf, LEN))
		fail("read %zd bytes in flight, want %d in order", n, LEN);
	if (write(WR, "again", 5) != 5 || read(RD, got, 6) != 5 || memcmp(got, "again", 5))
		fail("the write end no longer reaches the read end");
	return test_finish();
}
