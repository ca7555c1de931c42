/*
 * ghost_shared: one unlinked file opened separately by parent and child (two open descriptions of
 * one inode: the parent opens it, forks, the child opens the same path again, then it is
 * unlinked), offsets 100 and 200.  After restore both fds are still on one inode: each task
 * writes at its own offset and sees the other's write, the offsets move independently, the file
 * is still unlinked (nlink 0) and no name of it is left in the directory.
 *
 * The parent also holds a file unlinked under one name but still linked under another (nlink 1):
 * a dump copies it (a ghost) or, with --link-remap, links it back for the restore; either way the
 * fd reads the same data, the other name is untouched and no crpy link is left behind.
 */
#include "lib/zdtmtst.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (64 << 10)
#define PARENT_FD 40
#define CHILD_FD 41
#define LINKED_FD 42

static unsigned char buf[SIZE], want[SIZE];

/* After restore, once the parent has written "PARENT" at 100: write at our own offset and see
 * the parent's write. */
static int child_check(void)
{
	struct stat st;
	char got[6];

	if (lseek(CHILD_FD, 0, SEEK_CUR) != 200)
		return 1;
	if (write(CHILD_FD, "KIDKID", 6) != 6 || lseek(CHILD_FD, 0, SEEK_CUR) != 206)
		return 2;
	if (pread(CHILD_FD, got, 6, 100) != 6 || memcmp(got, "PARENT", 6))
		return 3;
	if (fstat(CHILD_FD, &st) || st.st_nlink != 0 || st.st_size != SIZE)
		return 4;
	return 0;
}

/* Names in the test's directory that start with the outfile's name plus `suffix`. */
static int names_left(const char *suffix, char *which, size_t size)
{
	char dir[4096], base[4096], prefix[4200];
	int n = 0;

	snprintf(dir, sizeof(dir), "%s", zdtm_outfile);
	snprintf(base, sizeof(base), "%s", zdtm_outfile);
	snprintf(prefix, sizeof(prefix), "%s%s", basename(base), suffix);
	DIR *d = opendir(dirname(dir));
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			snprintf(which, size, "%s", e->d_name);
			n++;
		}
	closedir(d);
	return n;
}

static void check_linked(void)
{
	struct stat fd_st, other_st;
	static unsigned char got[4096];

	if (fstat(LINKED_FD, &fd_st) || stat(test_path(".other"), &other_st))
		fail("linked file: %s", strerror(errno));
	else if (fd_st.st_ino == other_st.st_ino ? fd_st.st_nlink != 1 : fd_st.st_nlink != 0)
		fail("linked file: nlink %lu", (unsigned long)fd_st.st_nlink);
	if (pread(LINKED_FD, got, sizeof(got), 0) != sizeof(got) || check_pattern(got, sizeof(got), 0x4242) >= 0)
		fail("linked file: the fd does not read its data");
	int o = open(test_path(".other"), O_RDONLY);
	if (o < 0 || pread(o, got, sizeof(got), 0) != sizeof(got) || check_pattern(got, sizeof(got), 0x4242) >= 0)
		fail("linked file: its other name lost its data");
	if (o >= 0)
		close(o);
}

int main(int argc, char **argv)
{
	static const char *why[] = { "", "its offset moved", "its write failed", "it does not see the parent's write",
				     "its file is linked again or resized" };
	struct stat mine, kids;
	char kid_fd[64], which[256], got[6];

	test_init(argc, argv);
	test_usr1_init();
	fill_pattern(buf, SIZE, 0x5151);
	int fd = open(test_path(".ghost"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, SIZE) != SIZE || dup2(fd, PARENT_FD) < 0 || lseek(PARENT_FD, 100, SEEK_SET) != 100)
		test_abort("ghost: %s", strerror(errno));
	close(fd);
	fill_pattern(buf, 4096, 0x4242);
	fd = open(test_path(".linked"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, 4096) != 4096 || dup2(fd, LINKED_FD) < 0 ||
	    link(test_path(".linked"), test_path(".other")) || unlink(test_path(".linked")))
		test_abort("linked: %s", strerror(errno));
	close(fd);

	pid_t kid = test_fork();
	if (kid == 0) {
		close(LINKED_FD);
		fd = open(test_path(".ghost"), O_RDWR);
		if (fd < 0 || dup2(fd, CHILD_FD) < 0 || lseek(CHILD_FD, 200, SEEK_SET) != 200)
			_exit(9);
		close(fd);
		kill(getppid(), SIGUSR1);
		test_usr1_wait();
		_exit(child_check());
	}
	test_usr1_wait();
	if (unlink(test_path(".ghost")))
		test_abort("unlink: %s", strerror(errno));
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		lseek(PARENT_FD, 0, SEEK_SET);
	snprintf(kid_fd, sizeof(kid_fd), "/proc/%d/fd/%d", kid, CHILD_FD);
	if (fstat(PARENT_FD, &mine) || stat(kid_fd, &kids))
		fail("fstat: %s", strerror(errno));
	else if (mine.st_ino != kids.st_ino || mine.st_dev != kids.st_dev)
		fail("parent and child hold two different files (inodes %lu and %lu)", (unsigned long)mine.st_ino,
		     (unsigned long)kids.st_ino);
	else if (mine.st_nlink != 0)
		fail("the file is linked again (nlink %lu)", (unsigned long)mine.st_nlink);
	if (lseek(PARENT_FD, 0, SEEK_CUR) != 100)
		fail("parent offset %ld, want 100", (long)lseek(PARENT_FD, 0, SEEK_CUR));
	if (write(PARENT_FD, "PARENT", 6) != 6)
		fail("parent write: %s", strerror(errno));
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child: %s (exit %d)", code < 5 ? why[code] : "setup failed", code);
	if (pread(PARENT_FD, got, 6, 200) != 6 || memcmp(got, "KIDKID", 6))
		fail("the parent does not see the child's write");
	if (lseek(PARENT_FD, 0, SEEK_CUR) != 106)
		fail("parent offset %ld after its write, want 106", (long)lseek(PARENT_FD, 0, SEEK_CUR));
	fill_pattern(want, SIZE, 0x5151);
	memcpy(want + 100, "PARENT", 6);
	memcpy(want + 200, "KIDKID", 6);
	if (pread(PARENT_FD, buf, SIZE, 0) != SIZE || memcmp(buf, want, SIZE))
		fail("the file does not hold its data and the two writes");
	if (names_left(".ghost", which, sizeof(which)))
		fail("a name of the unlinked file is left in the directory: %s", which);
	if (names_left(".linked", which, sizeof(which)))
		fail("a crpy link of the linked file is left in the directory: %s", which);
	check_linked();
	return test_finish();
}
