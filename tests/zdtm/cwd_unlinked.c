/*
 * cwd_unlinked: the task's cwd is a directory removed after the task went in (mode 0751), with
 * a file of it still open (relative path, unlinked too).  After restore: the cwd is that
 * directory again, removed ("DIR (deleted)", nlink 0, mode 0751), nothing is created in it, its
 * old path is free, and the file still reads its data.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FD 40

int main(int argc, char **argv)
{
	char dir[PATH_MAX], want[PATH_MAX + 16], link[PATH_MAX + 16], got[8];
	struct stat st;

	test_init(argc, argv);
	snprintf(dir, sizeof(dir), "%s", test_path(".cwd"));
	if (mkdir(dir, 0751) || chmod(dir, 0751) || chdir(dir))
		test_abort("mkdir/chdir: %s", strerror(errno));
	int fd = open("file", O_RDWR | O_CREAT, 0600);
	if (fd < 0 || write(fd, "inside", 6) != 6 || dup2(fd, FD) < 0 || unlink("file") || rmdir(dir))
		test_abort("file/rmdir: %s", strerror(errno));
	close(fd);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		chdir("/");
	snprintf(want, sizeof(want), "%s (deleted)", dir);
	ssize_t n = readlink("/proc/self/cwd", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, want))
		fail("cwd is \"%s\", want \"%s\"", link, want);
	if (stat(".", &st) || !S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0751)
		fail("cwd: mode %o nlink %lu, want a removed directory of mode 751", st.st_mode, (unsigned long)st.st_nlink);
	if (open("new", O_RDWR | O_CREAT, 0600) >= 0 || errno != ENOENT)
		fail("a file could be made in the removed cwd (errno %d)", errno);
	if (access(dir, F_OK) == 0)
		fail("%s exists again", dir);
	if (pread(FD, got, 6, 0) != 6 || memcmp(got, "inside", 6))
		fail("the file in the cwd lost its data");
	return test_finish();
}
