/*
 * file_shared: one open file description shared by the test and its child (opened before fork).
 * After restore the child reads 100 bytes and the parent's offset has moved by 100 too; the
 * parent reads the next bytes and the child sees that move.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FD 30


int main(int argc, char **argv)
{
	unsigned char data[4096], got[100];
	int fd;
	pid_t kid;

	test_init(argc, argv);
	fill_pattern(data, sizeof(data), 0x2222);
	fd = open(test_path(".data"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, sizeof(data)) != sizeof(data) || dup2(fd, FD) < 0)
		test_abort("file: %s", strerror(errno));
	close(fd);
	lseek(FD, 1000, SEEK_SET);
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		test_usr1_wait();
		if (read(FD, got, 100) != 100 || memcmp(got, data + 1000, 100))
			_exit(1);
		kill(getppid(), SIGUSR1);
		test_usr1_wait();
		_exit(lseek(FD, 0, SEEK_CUR) == 1200 ? 0 : 2);
	}
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {   /* a description of our own: no longer shared */
		int own = open(test_path(".data"), O_RDWR);
		dup2(own, FD);
		lseek(FD, 1000, SEEK_SET);
	}
	kill(kid, SIGUSR1);
	test_usr1_wait();
	if (lseek(FD, 0, SEEK_CUR) != 1100)
		fail("the child's read did not move the parent's offset (at %ld)", (long)lseek(FD, 0, SEEK_CUR));
	if (read(FD, got, 100) != 100 || memcmp(got, data + 1100, 100))
		fail("parent: wrong bytes after the child's read");
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child: %s (exit %d)", code == 2 ? "the parent's read did not move its offset" :
		     "wrong bytes at the shared offset", code);
	return test_finish();
}
