/*
 * unlinked: a file with 10 MiB of data, unlinked while open, fd at offset 5 MiB + 3, plus a
 * second open description of it at offset 17.  After restore: both fds still point at an unlinked
 * file ("(deleted)", nlink 0) holding the same 10 MiB, at their offsets, and they are one file
 * (same inode).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE (10UL << 20)
#define FD1 40
#define FD2 41

int main(int argc, char **argv)
{
	char *buf, link[4096];
	struct stat a, b;

	test_init(argc, argv);
	buf = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	fill_pattern(buf, SIZE, 0x3333);
	int fd = open(test_path(".ghost"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, SIZE) != (ssize_t)SIZE || dup2(fd, FD1) < 0)
		test_abort("file: %s", strerror(errno));
	close(fd);
	fd = open(test_path(".ghost"), O_RDONLY);
	if (fd < 0 || dup2(fd, FD2) < 0)
		test_abort("reopen: %s", strerror(errno));
	close(fd);
	unlink(test_path(".ghost"));
	lseek(FD1, (5L << 20) + 3, SEEK_SET);
	lseek(FD2, 17, SEEK_SET);
	memset(buf, 0, SIZE);   /* the copy in memory must not help */
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		pwrite(FD1, "X", 1, 9 << 20);
	snprintf(buf, 64, "/proc/self/fd/%d", FD1);
	ssize_t n = readlink(buf, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (!strstr(link, "(deleted)"))
		fail("fd %d points at \"%s\", not a deleted file", FD1, link);
	if (fstat(FD1, &a) || fstat(FD2, &b) || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		fail("the two fds are not on one file");
	else if (a.st_nlink != 0 || a.st_size != (off_t)SIZE)
		fail("nlink %lu size %ld, want 0 and %lu", (unsigned long)a.st_nlink, (long)a.st_size, SIZE);
	if (lseek(FD1, 0, SEEK_CUR) != (5L << 20) + 3 || lseek(FD2, 0, SEEK_CUR) != 17)
		fail("offsets %ld and %ld", (long)lseek(FD1, 0, SEEK_CUR), (long)lseek(FD2, 0, SEEK_CUR));
	if (pread(FD2, buf, SIZE, 0) != (ssize_t)SIZE)
		fail("short read: %s", strerror(errno));
	else {
		long bad = check_pattern(buf, SIZE, 0x3333);
		if (bad >= 0)
			fail("data differs at +%ld", bad);
	}
	return test_finish();
}
