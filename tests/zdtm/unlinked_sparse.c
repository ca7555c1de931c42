/*
 * unlinked_sparse: an unlinked file of 1 GiB + 123 bytes that is mostly holes: 64 KiB of data at
 * 0, 4 KiB at 512 MiB, 4 KiB ending 123 bytes before its end, a hole everywhere else (the end is
 * a hole too).  After restore: the same size, nlink 0, the data, and the holes still holes
 * (SEEK_HOLE/SEEK_DATA find the same extents; the file uses well under 1 MiB of disk).  The dump
 * copies the data extents only (ghost chunks), so it is quick and small.  Dumped with
 * --ghost-limit 2G (tests/zdtm/desc.py): criu's default limit is 1 MiB.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FD 40
#define SIZE ((1L << 30) + 123)
#define MID (512L << 20)
#define LAST (SIZE - 123 - 4096)

static unsigned char head[64 << 10], mid[4096], last[4096], got[64 << 10];

static void check_data(const unsigned char *want, size_t len, off_t off, const char *what)
{
	if (pread(FD, got, len, off) != (ssize_t)len || memcmp(got, want, len))
		fail("the %s data differs", what);
}

int main(int argc, char **argv)
{
	struct stat st;

	test_init(argc, argv);
	fill_pattern(head, sizeof(head), 0x5a11);
	fill_pattern(mid, sizeof(mid), 0x5a12);
	fill_pattern(last, sizeof(last), 0x5a13);
	int fd = open(test_path(".sparse"), O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (fd < 0 || dup2(fd, FD) < 0 || ftruncate(FD, SIZE) ||
	    pwrite(FD, head, sizeof(head), 0) != sizeof(head) || pwrite(FD, mid, sizeof(mid), MID) != sizeof(mid) ||
	    pwrite(FD, last, sizeof(last), LAST) != sizeof(last))
		test_abort("sparse file: %s", strerror(errno));
	close(fd);
	if (unlink(test_path(".sparse")) || lseek(FD, 777, SEEK_SET) != 777)
		test_abort("unlink: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		pwrite(FD, "X", 1, 300L << 20);         /* data where a hole was */
	if (fstat(FD, &st))
		fail("fstat: %s", strerror(errno));
	else if (st.st_size != SIZE || st.st_nlink != 0)
		fail("size %lld nlink %lu, want %ld and 0", (long long)st.st_size, (unsigned long)st.st_nlink, SIZE);
	else if (st.st_blocks * 512L > (1L << 20))
		fail("the file uses %lld KiB of disk: its holes were filled", (long long)st.st_blocks / 2);
	if (lseek(FD, 0, SEEK_CUR) != 777)
		fail("offset %ld, want 777", (long)lseek(FD, 0, SEEK_CUR));
	off_t hole = lseek(FD, 0, SEEK_HOLE), data = lseek(FD, hole, SEEK_DATA);
	off_t hole2 = lseek(FD, data, SEEK_HOLE), data2 = lseek(FD, hole2, SEEK_DATA);
	off_t hole3 = lseek(FD, data2, SEEK_HOLE);
	if (hole != sizeof(head) || data != MID || hole2 != MID + 4096 || data2 != LAST || hole3 != LAST + 4096)
		fail("extents: hole at %lld, data at %lld, hole at %lld, data at %lld, hole at %lld",
		     (long long)hole, (long long)data, (long long)hole2, (long long)data2, (long long)hole3);
	check_data(head, sizeof(head), 0, "first");
	check_data(mid, sizeof(mid), MID, "middle");
	check_data(last, sizeof(last), LAST, "last");
	memset(head, 0, sizeof(head));
	check_data(head, 123, SIZE - 123, "trailing hole's");
	return test_finish();
}
