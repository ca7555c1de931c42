/*
 * dir_unlinked_fd: fds on removed directories: A (mode 0705, removed) and B inside C (mode 0750),
 * where B and then C were removed.  After restore: each fd is a directory again, removed
 * (nlink 0, "PATH (deleted)"), of its mode; fchdir() into it works; none of the paths exists.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FDA 40
#define FDB 41

static void check(int fd, const char *path, mode_t mode)
{
	char fdpath[64], link[PATH_MAX + 16], want[PATH_MAX + 16];
	struct stat st;

	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	snprintf(want, sizeof(want), "%s (deleted)", path);
	ssize_t n = readlink(fdpath, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, want))
		fail("fd %d is \"%s\", want \"%s\"", fd, link, want);
	if (fstat(fd, &st) || !S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != mode)
		fail("fd %d: mode %o nlink %lu, want a removed directory of mode %o", fd, st.st_mode,
		     (unsigned long)st.st_nlink, mode);
	if (fchdir(fd))
		fail("fchdir to fd %d: %s", fd, strerror(errno));
	if (access(path, F_OK) == 0)
		fail("%s exists again", path);
}

int main(int argc, char **argv)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];

	test_init(argc, argv);
	snprintf(a, sizeof(a), "%s", test_path(".a"));
	snprintf(c, sizeof(c), "%s", test_path(".c"));
	snprintf(b, sizeof(b), "%s/b", c);
	if (mkdir(a, 0705) || chmod(a, 0705) || mkdir(c, 0755) || mkdir(b, 0750) || chmod(b, 0750))
		test_abort("mkdir: %s", strerror(errno));
	int fa = open(a, O_RDONLY | O_DIRECTORY), fb = open(b, O_RDONLY | O_DIRECTORY);
	if (fa < 0 || fb < 0 || dup2(fa, FDA) < 0 || dup2(fb, FDB) < 0 || rmdir(a) || rmdir(b) || rmdir(c))
		test_abort("open/rmdir: %s", strerror(errno));
	close(fa);
	close(fb);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		dup2(FDA, FDB);
	check(FDA, a, 0705);
	check(FDB, b, 0750);
	if (access(c, F_OK) == 0)
		fail("%s exists again", c);
	return test_finish();
}
