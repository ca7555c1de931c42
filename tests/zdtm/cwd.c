/*
 * cwd: the test's cwd is a directory two levels below its work directory, with a file opened by a
 * relative path and an O_DIRECTORY fd on the middle level.  After restore: getcwd() is the same,
 * relative paths resolve there, the directory fd is on the same inode.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIRFD 60

int main(int argc, char **argv)
{
	char before[4096], now[4096];
	struct stat d1, d2;

	test_init(argc, argv);
	if (mkdir(test_path(".d"), 0755) || mkdir(test_path(".d/sub dir"), 0755) || chdir(test_path(".d/sub dir")))
		test_abort("mkdir/chdir: %s", strerror(errno));
	int fd = open("..", O_RDONLY | O_DIRECTORY);
	if (fd < 0 || dup2(fd, DIRFD) < 0 || fstat(DIRFD, &d1))
		test_abort("open ..: %s", strerror(errno));
	close(fd);
	fd = open("here", O_WRONLY | O_CREAT, 0644);
	if (fd < 0 || write(fd, "here", 4) != 4)
		test_abort("create here: %s", strerror(errno));
	close(fd);
	if (!getcwd(before, sizeof(before)))
		test_abort("getcwd: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		chdir("..");
	if (!getcwd(now, sizeof(now)) || strcmp(now, before))
		fail("cwd is \"%s\", was \"%s\"", now, before);
	if (access("here", R_OK))
		fail("\"here\" not found relative to the cwd");
	if (fstat(DIRFD, &d2) || d1.st_ino != d2.st_ino || d1.st_dev != d2.st_dev)
		fail("the directory fd is on another inode");
	if (faccessat(DIRFD, "sub dir/here", R_OK, 0))
		fail("the directory fd does not resolve \"sub dir/here\"");
	return test_finish();
}
