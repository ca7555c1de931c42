/*
 * fds1000: 1000 open fds (numbers 100..1099): one file opened 1000 times, each description at
 * its own offset (the fd number), every 10th O_APPEND, every 7th close-on-exec, and a few dups.
 * After restore every fd is there with its offset and flags.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define FIRST 100
#define N 1000

int main(int argc, char **argv)
{
	struct rlimit rl;

	test_init(argc, argv);
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < FIRST + N + 16) {
		rl.rlim_cur = rl.rlim_max;
		if (rl.rlim_cur < FIRST + N + 16 || setrlimit(RLIMIT_NOFILE, &rl))
			test_abort("RLIMIT_NOFILE %lu is too small for %d fds", (unsigned long)rl.rlim_max, N);
	}
	int fd = open(test_path(".data"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 4096))
		test_abort("file: %s", strerror(errno));
	close(fd);
	for (int i = 0; i < N; i++) {
		int n = FIRST + i;
		if (i % 100 == 99) {   /* a dup of the fd before it */
			if (dup2(n - 1, n) < 0)
				test_abort("dup2: %s", strerror(errno));
			continue;
		}
		fd = open(test_path(".data"), O_RDWR | (i % 10 == 3 ? O_APPEND : 0) | (i % 7 == 0 ? O_CLOEXEC : 0));
		if (fd < 0 || dup2(fd, n) < 0)
			test_abort("open #%d: %s", i, strerror(errno));
		close(fd);
		if (i % 7 == 0)   /* dup2 does not carry O_CLOEXEC over */
			fcntl(n, F_SETFD, FD_CLOEXEC);
		lseek(n, n, SEEK_SET);
	}
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(FIRST + 500);
	int bad = 0;
	for (int i = 0; i < N; i++) {
		int n = FIRST + i, src = i % 100 == 99 ? i - 1 : i;
		int fl = fcntl(n, F_GETFL), fdfl = fcntl(n, F_GETFD);
		off_t pos = lseek(n, 0, SEEK_CUR);
		int want_app = src % 10 == 3, want_cx = i % 7 == 0 && i % 100 != 99;
		if (fl < 0 || pos != FIRST + src || !!(fl & O_APPEND) != want_app || !!(fdfl & FD_CLOEXEC) != want_cx ||
		    (fl & O_ACCMODE) != O_RDWR) {
			if (!bad++)
				fail("fd %d: flags %#x fdflags %d pos %ld (want pos %d append %d cloexec %d)", n, fl,
				     fdfl, (long)pos, FIRST + src, want_app, want_cx);
		}
	}
	if (bad)
		fail("%d of %d fds differ", bad, N);
	if (fcntl(FIRST + N, F_GETFD) != -1 || fcntl(FIRST - 1, F_GETFD) != -1)
		fail("an fd next to the range appeared");
	return test_finish();
}
