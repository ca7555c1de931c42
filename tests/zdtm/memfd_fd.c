/*
 * memfd_fd: open memfds (no mappings).  "crpy-a": 3 pages of data, a hole, a half page more, mode
 * 0640, sealed F_SEAL_GROW|F_SEAL_SHRINK, offset in the middle, plus a second description opened
 * through /proc/self/fd (its own offset, same inode); "crpy-b": shared with a forked child (one
 * description), which moves the offset after the restore; the child also holds a description of
 * its own on "crpy-a" and writes through it after the restore; "crpy-c": created without
 * MFD_ALLOW_SEALING.  After restore: names, contents, size, offsets, seals, mode, one inode (in
 * one task and across the two).
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

#define SIZE_A (5 * PAGE_SIZE + PAGE_SIZE / 2)   /* pages 0-2 data, 3 a hole, 4 data, 5 half */
#define POS_A 12345
#define POS_A2 777
#define POS_B 100
#define MOVE_B 4000
#define POS_KID 300


static char buf[SIZE_A];

static void write_all(int fd, const void *p, size_t len, off_t off)
{
	if (pwrite(fd, p, len, off) != (ssize_t)len)
		test_abort("pwrite: %s", strerror(errno));
}

static void check_name(int fd, const char *name)
{
	char path[64], link[256], want[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		fail("readlink fd %d: %s", fd, strerror(errno));
		return;
	}
	link[n] = 0;
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
	if (strcmp(link, want))
		fail("fd %d is %s, want %s", fd, link, want);
}

static void check_pos(int fd, off_t want, const char *what)
{
	off_t pos = lseek(fd, 0, SEEK_CUR);

	if (pos != want)
		fail("%s: offset %ld, want %ld", what, (long)pos, (long)want);
}

int main(int argc, char **argv)
{
	int a, a2, b, c, seals;
	struct stat sa, sa2;
	pid_t kid;
	long bad;

	test_init(argc, argv);
	a = memfd_create("crpy-a", MFD_ALLOW_SEALING);
	b = memfd_create("crpy-b", MFD_CLOEXEC);
	c = memfd_create("crpy-c", 0);
	if (a < 0 || b < 0 || c < 0)
		test_abort("memfd_create: %s", strerror(errno));
	fill_pattern(buf, sizeof(buf), 0xa11ce);
	write_all(a, buf, 3 * PAGE_SIZE, 0);
	write_all(a, buf + 4 * PAGE_SIZE, SIZE_A - 4 * PAGE_SIZE, 4 * PAGE_SIZE);
	if (fchmod(a, 0640) || fcntl(a, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK))
		test_abort("fchmod/F_ADD_SEALS: %s", strerror(errno));
	lseek(a, POS_A, SEEK_SET);
	{
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", a);
		a2 = open(path, O_RDONLY);     /* a second description of the same inode */
		if (a2 < 0)
			test_abort("reopen: %s", strerror(errno));
		lseek(a2, POS_A2, SEEK_SET);
	}
	write_all(b, "memfd b holds this", 18, 0);
	if (ftruncate(b, 2 * PAGE_SIZE))
		test_abort("ftruncate: %s", strerror(errno));
	lseek(b, POS_B, SEEK_SET);
	write_all(c, "c", 1, 0);

	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		char path[64];
		int own;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", a);
		own = open(path, O_RDWR);      /* the child's own description of crpy-a */
		if (own < 0 || lseek(own, POS_KID, SEEK_SET) != POS_KID)
			_exit(3);
		close(a);
		close(a2);
		close(c);
		test_usr1_wait();
		if (lseek(own, 0, SEEK_CUR) != POS_KID || pwrite(own, "K", 1, 6) != 1)
			_exit(2);
		/* one description with the parent: this move is the parent's offset too */
		_exit(lseek(b, MOVE_B, SEEK_CUR) == POS_B + MOVE_B ? 0 : 1);
	}
	test_write_pids(&kid, 1);
	test_daemon();
	test_waitsig();

	if (zdtm_break) {
		lseek(a, 0, SEEK_SET);
		write_all(b, "X", 1, 3);
	}
	check_name(a, "crpy-a");
	check_name(a2, "crpy-a");
	check_name(b, "crpy-b");
	check_name(c, "crpy-c");
	check_pos(a, POS_A, "crpy-a");
	check_pos(a2, POS_A2, "crpy-a, second description");
	check_pos(b, POS_B, "crpy-b");

	/* contents and size of crpy-a, the hole reads as zeros */
	static char got[SIZE_A], zero[PAGE_SIZE];
	if (fstat(a, &sa) || sa.st_size != (off_t)SIZE_A)
		fail("crpy-a: size %ld, want %ld", (long)sa.st_size, (long)SIZE_A);
	if (pread(a, got, SIZE_A, 0) != (ssize_t)SIZE_A)
		fail("crpy-a: short read");
	if ((bad = memcmp(got, buf, 3 * PAGE_SIZE)) || memcmp(got + 4 * PAGE_SIZE, buf + 4 * PAGE_SIZE,
							      SIZE_A - 4 * PAGE_SIZE))
		fail("crpy-a: data differs");
	if (memcmp(got + 3 * PAGE_SIZE, zero, PAGE_SIZE))
		fail("crpy-a: the hole is not zeros");
	if ((sa.st_mode & 07777) != 0640)
		fail("crpy-a: mode %o, want 640", sa.st_mode & 07777);
	seals = fcntl(a, F_GET_SEALS);
	if (seals != (F_SEAL_GROW | F_SEAL_SHRINK))
		fail("crpy-a: seals %#x, want %#x", seals, F_SEAL_GROW | F_SEAL_SHRINK);
	if (ftruncate(a, SIZE_A + PAGE_SIZE) == 0 || errno != EPERM)
		fail("crpy-a: grows in spite of F_SEAL_GROW");
	if (fstat(a2, &sa2) || sa2.st_ino != sa.st_ino || sa2.st_dev != sa.st_dev)
		fail("crpy-a: the two descriptions are two inodes");
	write_all(a, "Z", 1, 5);
	if (pread(a2, got, 1, 5) != 1 || got[0] != 'Z')
		fail("crpy-a: a write through one description is not seen through the other");
	if ((fcntl(a2, F_GETFL) & O_ACCMODE) != O_RDONLY || (fcntl(a, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("crpy-a: access modes changed");

	/* crpy-b: contents, size, close-on-exec, and the child's move */
	if (pread(b, got, 18, 0) != 18 || memcmp(got, "memfd b holds this", 18))
		fail("crpy-b: data differs");
	if (fstat(b, &sa) || sa.st_size != 2 * PAGE_SIZE)
		fail("crpy-b: size %ld", (long)sa.st_size);
	if (!(fcntl(b, F_GETFD) & FD_CLOEXEC) || fcntl(c, F_GETFD) & FD_CLOEXEC)
		fail("close-on-exec flags changed");
	seals = fcntl(b, F_GET_SEALS);
	if (seals != F_SEAL_SEAL)
		fail("crpy-b: seals %#x, want F_SEAL_SEAL (created without MFD_ALLOW_SEALING)", seals);
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child: exit %d (1: crpy-b's offset not the parent's, 2: its own description of "
		     "crpy-a lost its offset)", code);
	check_pos(b, POS_B + MOVE_B, "crpy-b after the child moved it");
	if (pread(a, got, 1, 6) != 1 || got[0] != 'K')
		fail("crpy-a: the child's write through its own description is not seen: two inodes");

	/* crpy-c: created without sealing */
	seals = fcntl(c, F_GET_SEALS);
	if (seals != F_SEAL_SEAL)
		fail("crpy-c: seals %#x, want F_SEAL_SEAL", seals);
	if (pread(c, got, 2, 0) != 1 || got[0] != 'c')
		fail("crpy-c: data differs");
	return test_finish();
}
