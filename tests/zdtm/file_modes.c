/*
 * file_modes: regular files open at various offsets in every access mode: O_RDONLY at 4097,
 * O_WRONLY at 123, O_RDWR at 65536 (past a hole), O_WRONLY|O_APPEND, O_RDWR|O_NONBLOCK|O_CLOEXEC,
 * O_PATH, and a dup of the O_RDWR fd.  After restore: the same fd numbers, each fd's pos and flags
 * in /proc/self/fdinfo, reads at the offset give the right bytes, writes land at the offset (and
 * at the end for O_APPEND), the dup still shares its offset.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct f {
	int fd;
	int flags;
	off_t pos;
	const char *suffix;
};

static struct f files[] = {
	{ 10, O_RDONLY, 4097, ".ro" },
	{ 11, O_WRONLY, 123, ".wo" },
	{ 12, O_RDWR, 65536, ".rw" },
	{ 13, O_WRONLY | O_APPEND, 0, ".app" },
	{ 14, O_RDWR | O_NONBLOCK | O_CLOEXEC, 777, ".nb" },
	{ 15, O_PATH, 0, ".path" },
};
#define NF (sizeof(files) / sizeof(files[0]))
#define DUP_FD 20

static char before[NF + 1][256];

static void fdinfo(int fd, char *out, size_t size)
{
	char path[64], buf[1024], *pos, *flg, *e1, *e2;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	out[0] = 0;
	if (read_whole(path, buf, sizeof(buf)) < 0 || !(pos = strstr(buf, "pos:")) || !(flg = strstr(buf, "flags:")))
		return;
	e1 = strchr(pos, '\n');
	e2 = strchr(flg, '\n');
	snprintf(out, size, "%.*s %.*s", (int)(e1 - pos), pos, (int)(e2 - flg), flg);
}

int main(int argc, char **argv)
{
	unsigned char data[8192], got[64];

	test_init(argc, argv);
	fill_pattern(data, sizeof(data), 0x1111);
	for (size_t i = 0; i < NF; i++) {
		const char *path = test_path(files[i].suffix);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, data, sizeof(data)) != sizeof(data))
			test_abort("create %s: %s", path, strerror(errno));
		if (files[i].flags & O_RDWR && files[i].pos == 65536 && pwrite(fd, "end", 3, 70000) != 3)
			test_abort("pwrite: %s", strerror(errno));
		close(fd);
		fd = open(path, files[i].flags);
		if (fd < 0 || dup2(fd, files[i].fd) < 0)
			test_abort("open %s: %s", path, strerror(errno));
		close(fd);
		if (files[i].flags & O_CLOEXEC)   /* dup2 does not carry it over */
			fcntl(files[i].fd, F_SETFD, FD_CLOEXEC);
		if (files[i].flags != O_PATH && lseek(files[i].fd, files[i].pos, SEEK_SET) != files[i].pos)
			test_abort("lseek: %s", strerror(errno));
	}
	if (dup2(12, DUP_FD) < 0)
		test_abort("dup2: %s", strerror(errno));
	for (size_t i = 0; i < NF; i++)
		fdinfo(files[i].fd, before[i], sizeof(before[i]));
	fdinfo(DUP_FD, before[NF], sizeof(before[NF]));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		lseek(12, 1, SEEK_CUR);
	for (size_t i = 0; i <= NF; i++) {
		char now[256];
		int fd = i < NF ? files[i].fd : DUP_FD;
		fdinfo(fd, now, sizeof(now));
		if (strcmp(now, before[i]))
			fail("fd %d: \"%s\", was \"%s\"", fd, now, before[i]);
	}
	if ((fcntl(14, F_GETFD) & FD_CLOEXEC) == 0 || (fcntl(11, F_GETFD) & FD_CLOEXEC))
		fail("close-on-exec bits changed");
	if (read(10, got, 16) != 16 || memcmp(got, data + 4097, 16))
		fail("O_RDONLY fd: wrong bytes at its offset");
	if (write(11, "W", 1) != 1 || pread(12, got, 0, 0) < 0)
		fail("O_WRONLY fd: write: %s", strerror(errno));
	if (read(12, got, 4) != 4 || memcmp(got, "\0\0\0\0", 4))
		fail("O_RDWR fd: not in the hole at 65536");
	if (lseek(DUP_FD, 0, SEEK_CUR) != 65540)
		fail("the dup'ed fd does not share the offset (at %ld)", (long)lseek(DUP_FD, 0, SEEK_CUR));
	if (write(13, "APPEND", 6) != 6 || lseek(13, 0, SEEK_CUR) != (off_t)sizeof(data) + 6)
		fail("O_APPEND write did not go to the end");
	if (read(14, got, 8) != 8 || memcmp(got, data + 777, 8))
		fail("O_RDWR|O_NONBLOCK fd: wrong bytes at its offset");
	int fd = open(test_path(".wo"), O_RDONLY);
	if (pread(fd, got, 1, 123) != 1 || got[0] != 'W')
		fail("O_WRONLY fd wrote at the wrong offset");
	close(fd);
	return test_finish();
}
