/*
 * clone_files_grandchild: the root and its child share one fd table (CLONE_FILES); after the
 * clone the root opens a file at fd 50 (offset 10), which the child sees through the shared table;
 * the child then fork()s a grandchild with a table of its own (a copy: fd 50 and stdio are the
 * same open file descriptions as the root's).  After restore the root opens /dev/zero at fd 60:
 * the child sees it, the grandchild does not; the grandchild writes 5 bytes through fd 50 and the
 * root sees the shared offset at 15.  Exit codes say which check failed (1x: child, 2x: grandchild).
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (256 << 10)
#define DATA_FD 50
#define ZERO_FD 60

static int sync_pipe[2], pid_pipe[2];

static int is_chardev(int fd, unsigned major_nr, unsigned minor_nr)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == major_nr &&
	       minor(st.st_rdev) == minor_nr;
}

static int grandchild(void)
{
	test_usr1_wait();
	if (fcntl(ZERO_FD, F_GETFD) != -1)
		return 20;                  /* the root's new fd showed up in our own table */
	if (lseek(DATA_FD, 0, SEEK_CUR) != 10)
		return 21;
	if (write(DATA_FD, "moved", 5) != 5)
		return 22;
	return 0;
}

static int child(void *arg)
{
	int status;
	char c;

	(void)arg;
	if (read(sync_pipe[0], &c, 1) != 1)
		return 30;                  /* the root has opened fd 50 in our shared table */
	pid_t g = test_fork();
	if (g == 0) {
		close(sync_pipe[0]);
		close(sync_pipe[1]);
		close(pid_pipe[0]);
		close(pid_pipe[1]);
		_exit(grandchild());
	}
	if (write(pid_pipe[1], &g, sizeof(g)) != sizeof(g))
		return 32;
	test_usr1_wait();
	if (!is_chardev(ZERO_FD, 1, 5))
		return 10;                  /* the root's fd 60 is not in our table */
	if (kill(g, SIGUSR1) || waitpid(g, &status, 0) != g)
		return 11;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 12;
}

int main(int argc, char **argv)
{
	pid_t pids[2];

	test_init(argc, argv);
	test_usr1_init();
	if (pipe(sync_pipe) || pipe(pid_pipe))
		test_abort("pipe: %s", strerror(errno));
	char *stack = malloc(STACK_SIZE);
	pids[0] = clone(child, stack + STACK_SIZE, CLONE_FILES | SIGCHLD, NULL);
	if (pids[0] < 0)
		test_abort("clone: %s", strerror(errno));
	int fd = open(test_path(".data"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "0123456789", 10) != 10 || dup2(fd, DATA_FD) != DATA_FD)
		test_abort("data file: %s", strerror(errno));
	close(fd);
	if (write(sync_pipe[1], "g", 1) != 1 || read(pid_pipe[0], &pids[1], sizeof(pids[1])) != sizeof(pids[1]))
		test_abort("no grandchild pid from the child");
	close(sync_pipe[0]);
	close(sync_pipe[1]);
	close(pid_pipe[0]);
	close(pid_pipe[1]);
	test_write_pids(pids, 2);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		lseek(DATA_FD, 0, SEEK_SET);
	fd = open("/dev/zero", O_RDONLY);
	if (fd < 0 || dup2(fd, ZERO_FD) != ZERO_FD)
		fail("open /dev/zero at fd %d: %s", ZERO_FD, strerror(errno));
	close(fd);
	kill(pids[0], SIGUSR1);
	int code = test_reap(pids[0], "the child");
	if (code > 0)
		fail("a child's check failed: exit %d (1x: child, 2x: grandchild)", code);
	off_t off = lseek(DATA_FD, 0, SEEK_CUR);
	if (off != 15)
		fail("data file offset %ld, expected 15", (long)off);
	return test_finish();
}
