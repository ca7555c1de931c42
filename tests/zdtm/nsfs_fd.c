/*
 * nsfs_fd: fds on the task's own namespaces: /proc/self/ns/net (fd 40), uts (41) and pid (42,
 * close-on-exec).  After restore: each is an nsfs file of the namespace the task lives in (same
 * inode and link as /proc/self/ns/KIND), setns() accepts the net and uts ones, the
 * close-on-exec bits are as they were.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
	int fd;
	const char *name;
	int cloexec;
	int nstype;
} ns[] = { { 40, "net", 0, CLONE_NEWNET }, { 41, "uts", 0, CLONE_NEWUTS }, { 42, "pid", 1, 0 } };

int main(int argc, char **argv)
{
	char path[64], want[64], got[64];
	struct stat a, b;

	test_init(argc, argv);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i].name);
		int fd = open(path, O_RDONLY | (ns[i].cloexec ? O_CLOEXEC : 0));
		if (fd < 0 || dup3(fd, ns[i].fd, ns[i].cloexec ? O_CLOEXEC : 0) < 0)
			test_abort("%s: %s", path, strerror(errno));
		close(fd);
	}
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		dup2(41, 40);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i].name);
		ssize_t n = readlink(path, want, sizeof(want) - 1);
		want[n > 0 ? n : 0] = 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", ns[i].fd);
		n = readlink(path, got, sizeof(got) - 1);
		got[n > 0 ? n : 0] = 0;
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i].name);
		if (strcmp(got, want) || fstat(ns[i].fd, &a) || stat(path, &b) || a.st_ino != b.st_ino)
			fail("fd %d is \"%s\", want \"%s\"", ns[i].fd, got, want);
		if (!!(fcntl(ns[i].fd, F_GETFD) & FD_CLOEXEC) != ns[i].cloexec)
			fail("fd %d: close-on-exec %d, want %d", ns[i].fd, fcntl(ns[i].fd, F_GETFD), ns[i].cloexec);
		if (ns[i].nstype && setns(ns[i].fd, ns[i].nstype))
			fail("setns on fd %d: %s", ns[i].fd, strerror(errno));
	}
	return test_finish();
}
