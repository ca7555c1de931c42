/*
 * nsfs_foreign: an fd (40) on a UTS namespace that is not the task's (a child made it with
 * unshare, set its hostname and exited; the fd keeps it alive).  crpy restores no namespace:
 * the dump must refuse with one line naming the fd and leave the task untouched
 * (tests/zdtm/desc.py: dump_fails); the fd then still enters that namespace, hostname and all.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FD 40

int main(int argc, char **argv)
{
	char path[64], name[64];
	int up[2], down[2], status;
	struct stat own, other;

	test_init(argc, argv);
	if (pipe(up) || pipe(down))
		test_abort("pipe: %s", strerror(errno));
	pid_t kid = test_fork();
	if (kid == 0) {
		char c;
		if (unshare(CLONE_NEWUTS) || sethostname("crpy-foreign", 12))
			_exit(1);
		write(up[1], "r", 1);
		read(down[0], &c, 1);      /* until the parent holds the namespace */
		_exit(0);
	}
	close(up[1]);
	char c;
	if (read(up[0], &c, 1) != 1)
		test_abort("the child could not make a namespace");
	snprintf(path, sizeof(path), "/proc/%d/ns/uts", kid);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || dup2(fd, FD) < 0)
		test_abort("%s: %s", path, strerror(errno));
	close(fd);
	write(down[1], "g", 1);
	close(up[0]), close(down[0]), close(down[1]);
	if (waitpid(kid, &status, 0) != kid || status)
		test_abort("child ended with status 0x%x", status);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		dup2(open("/proc/self/ns/uts", O_RDONLY), FD);
	if (fstat(FD, &other) || stat("/proc/self/ns/uts", &own) || other.st_ino == own.st_ino)
		fail("fd %d is no longer on the other UTS namespace", FD);
	else if (test_fork() == 0) {
		_exit(setns(FD, CLONE_NEWUTS) || gethostname(name, sizeof(name)) || strcmp(name, "crpy-foreign"));
	} else if (wait(&status) < 0 || status)
		fail("the namespace behind fd %d lost its hostname", FD);
	return test_finish();
}
