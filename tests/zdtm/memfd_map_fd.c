/*
 * memfd_map_fd: a memfd ("crpy-mapfd", 64 KiB, sealed F_SEAL_SHRINK) open as an fd at an offset AND
 * mapped MAP_SHARED, by the test and by a forked child (which inherited both).  After restore it
 * must be one inode again: the maps line still says /memfd:crpy-mapfd (deleted), the mapping's
 * inode is the fd's, a write through the fd shows in the mapping and a write into the mapping in a
 * read of the fd, in both tasks; data, size, seals and offset kept.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (64UL << 10)
#define POS 5000


static unsigned char *area;
static int fd;

/* 0 when the maps line of `area` names the memfd and its inode is the fd's */
static int check_maps(void)
{
	static char maps[1 << 16];
	char want[64];
	struct stat st;
	unsigned long lo, hi, ino;
	char *line;

	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0 || fstat(fd, &st))
		return 1;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)area);
	for (line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, want, strlen(want)))
			continue;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &ino) != 3 || ino != st.st_ino)
			return 2;
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		return strstr(line, "/memfd:crpy-mapfd (deleted)") ? 0 : 3;
	}
	return 4;
}

/* a write through the fd is seen in the mapping, and one into the mapping through the fd */
static int check_one_inode(unsigned long at, unsigned char mark)
{
	unsigned char c = 0;

	if (pwrite(fd, &mark, 1, at) != 1 || area[at] != mark)
		return 1;
	area[at + 1] = mark;
	if (pread(fd, &c, 1, at + 1) != 1 || c != mark)
		return 2;
	return 0;
}

int main(int argc, char **argv)
{
	int r;
	struct stat st;
	pid_t kid;
	long bad;

	test_init(argc, argv);
	fd = memfd_create("crpy-mapfd", MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, SIZE))
		test_abort("memfd: %s", strerror(errno));
	area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (area == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	fill_pattern(area, SIZE / 2, 0x3e3f);
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK))
		test_abort("F_ADD_SEALS: %s", strerror(errno));
	lseek(fd, POS, SEEK_SET);

	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		test_usr1_wait();
		if (check_maps())
			_exit(1);
		if (check_one_inode(SIZE / 2 + 100, 0x77))
			_exit(2);
		if (area[SIZE / 2] != 0x55)         /* the parent's write, after the restore */
			_exit(3);
		_exit(0);
	}
	test_write_pids(&kid, 1);
	test_daemon();
	test_waitsig();

	if (zdtm_break)
		mmap(area, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if ((r = check_maps()))
		fail("maps line of the mapping: check %d failed (not the memfd of the fd)", r);
	if ((bad = check_pattern(area, SIZE / 2, 0x3e3f)) >= 0)
		fail("data differs at +%ld", bad);
	if (fstat(fd, &st) || st.st_size != (off_t)SIZE)
		fail("size %ld", (long)st.st_size);
	if (fcntl(fd, F_GET_SEALS) != F_SEAL_SHRINK)
		fail("seals %#x", fcntl(fd, F_GET_SEALS));
	if (lseek(fd, 0, SEEK_CUR) != POS)
		fail("offset %ld", (long)lseek(fd, 0, SEEK_CUR));
	if ((r = check_one_inode(SIZE / 2 + 10, 0x66)))
		fail("fd and mapping are two objects (check %d)", r);
	area[SIZE / 2] = 0x55;
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child: check %d failed (1 maps, 2 fd/mapping, 3 the parent's write)", code);
	else if (code == 0 && (area[SIZE / 2 + 100] != 0x77 || area[SIZE / 2 + 101] != 0x77))
		fail("the child's writes are not in the parent's mapping");
	return test_finish();
}
