/*
 * opath_symlink: O_PATH|O_NOFOLLOW fds on symlinks themselves: a dangling one (fd 40), one to a
 * file (41, close-on-exec), one to a directory (42) and one unlinked since (43, owned by
 * 4321:4322).  After restore: each fd is still the symlink (S_IFLNK, the inode of its name; the
 * unlinked one: nlink 0, "(deleted)", its owner, its name free), points where it pointed
 * (readlinkat(fd, "")), has O_PATH|O_NOFOLLOW in its flags and its close-on-exec bit.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
	int fd;
	const char *name, *target;
	int cloexec;
} links[] = { { 40, ".dangling", "nowhere/at/all", 0 }, { 41, ".tofile", "opath_symlink.out.file", 1 },
	      { 42, ".todir", "/tmp", 0 }, { 43, ".unlinked", "../gone/for/good", 0 } };
#define NLINKS 4
#define UNLINKED 3

int main(int argc, char **argv)
{
	char got[PATH_MAX];
	struct stat a, b;

	test_init(argc, argv);
	int f = open(test_path(".file"), O_RDWR | O_CREAT, 0644);
	if (f < 0 || write(f, "payload", 7) != 7)
		test_abort("file: %s", strerror(errno));
	close(f);
	for (unsigned i = 0; i < NLINKS; i++) {
		int fd;
		if (symlink(links[i].target, test_path(links[i].name)) ||
		    (fd = open(test_path(links[i].name), O_PATH | O_NOFOLLOW | (links[i].cloexec ? O_CLOEXEC : 0))) < 0 ||
		    dup3(fd, links[i].fd, links[i].cloexec ? O_CLOEXEC : 0) < 0)
			test_abort("symlink %s: %s", links[i].name, strerror(errno));
		close(fd);
	}
	if (fchownat(links[UNLINKED].fd, "", 4321, 4322, AT_EMPTY_PATH) || unlink(test_path(links[UNLINKED].name)))
		test_abort("unlinked symlink: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		dup2(41, 40);
	for (unsigned i = 0; i < NLINKS; i++) {
		int fd = links[i].fd, fl = fcntl(fd, F_GETFL);
		ssize_t n = readlinkat(fd, "", got, sizeof(got) - 1);
		got[n > 0 ? n : 0] = 0;
		if (strcmp(got, links[i].target))
			fail("fd %d points at \"%s\", want \"%s\"", fd, got, links[i].target);
		if (i == UNLINKED) {
			char fdpath[64], name[PATH_MAX];
			snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
			n = readlink(fdpath, name, sizeof(name) - 1);
			name[n > 0 ? n : 0] = 0;
			if (fstat(fd, &a) || !S_ISLNK(a.st_mode) || a.st_nlink != 0 || a.st_uid != 4321 || a.st_gid != 4322 ||
			    !strstr(name, "(deleted)"))
				fail("fd %d is not an unlinked symlink of 4321:4322 (\"%s\", nlink %lu, %u:%u)", fd, name,
				     (unsigned long)a.st_nlink, a.st_uid, a.st_gid);
			if (lstat(test_path(links[i].name), &b) == 0)
				fail("the unlinked symlink has its name again");
		} else if (fstat(fd, &a) || lstat(test_path(links[i].name), &b) || !S_ISLNK(a.st_mode) || a.st_ino != b.st_ino)
			fail("fd %d is not the symlink %s", fd, links[i].name);
		if ((fl & (O_PATH | O_NOFOLLOW)) != (O_PATH | O_NOFOLLOW))
			fail("fd %d flags %#o lack O_PATH|O_NOFOLLOW", fd, fl);
		if (!!(fcntl(fd, F_GETFD) & FD_CLOEXEC) != links[i].cloexec)
			fail("fd %d: close-on-exec %d", fd, fcntl(fd, F_GETFD));
	}
	return test_finish();
}
