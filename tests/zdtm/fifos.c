/*
 * fifos: a named FIFO opened read-write (holding 3000 bytes), and a second FIFO opened read-only
 * (O_NONBLOCK) and write-only, holding 100 bytes.  After restore: each fd is on its FIFO with its
 * access mode, the bytes come out in order, and writes through the write-only fd reach the reader.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RW 50
#define RO 51
#define WO 52

static int reopen_at(const char *path, int flags, int fd)
{
	int f = open(path, flags);
	if (f < 0 || dup2(f, fd) < 0)
		test_abort("open %s: %s", path, strerror(errno));
	close(f);
	return fd;
}

int main(int argc, char **argv)
{
	unsigned char a[3000], b[100], got[4000];
	struct stat st;

	test_init(argc, argv);
	if (mkfifo(test_path(".fifo1"), 0600) || mkfifo(test_path(".fifo2"), 0600))
		test_abort("mkfifo: %s", strerror(errno));
	reopen_at(test_path(".fifo1"), O_RDWR, RW);
	reopen_at(test_path(".fifo2"), O_RDONLY | O_NONBLOCK, RO);
	reopen_at(test_path(".fifo2"), O_WRONLY, WO);
	fill_pattern(a, sizeof(a), 0x8888);
	fill_pattern(b, sizeof(b), 0x9999);
	if (write(RW, a, sizeof(a)) != sizeof(a) || write(WO, b, sizeof(b)) != sizeof(b))
		test_abort("write: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		read(RO, got, 1);
	int modes[3] = { O_RDWR, O_RDONLY, O_WRONLY }, fds[3] = { RW, RO, WO };
	for (int i = 0; i < 3; i++) {
		int fl = fcntl(fds[i], F_GETFL);
		if (fl < 0 || (fl & O_ACCMODE) != modes[i] || fstat(fds[i], &st) || !S_ISFIFO(st.st_mode))
			fail("fd %d: flags %#x, not a FIFO in mode %d", fds[i], fl, modes[i]);
	}
	if (!(fcntl(RO, F_GETFL) & O_NONBLOCK))
		fail("the read-only fd lost O_NONBLOCK");
	struct stat named;
	if (stat(test_path(".fifo1"), &named) || fstat(RW, &st) || named.st_ino != st.st_ino)
		fail("the read-write fd is not on the named FIFO");
	if (read(RW, got, sizeof(got)) != sizeof(a) || memcmp(got, a, sizeof(a)))
		fail("the read-write FIFO lost its bytes");
	if (read(RO, got, sizeof(got)) != sizeof(b) || memcmp(got, b, sizeof(b)))
		fail("the read-only FIFO lost its bytes");
	if (write(WO, "ping", 4) != 4 || read(RO, got, 8) != 4 || memcmp(got, "ping", 4))
		fail("write-only -> read-only FIFO does not work after restore");
	return test_finish();
}
