/*
 * clone_files: three processes sharing ONE fd table (clone with CLONE_FILES, no CLONE_VM): the
 * root, its child, and the child's child.  A file opened before the dump is at offset 10.  After
 * restore the root opens /dev/zero at fd 200 and wakes the child; the grandchild sees fd 200 and
 * opens /dev/null at fd 202; the child sees 200 and 202, opens /dev/null at 201 and moves the
 * file's offset by 5; the root then sees 201 and 202 and offset 15.  Exit codes say which check
 * of a child failed; no fd above 202 may be open (crpy's own are gone).  (No test_forked_child()
 * in the children: closing the readiness fd there would close it for the root too.)
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

static int data_fd;

/* fd is open and is the character device major:minor */
static int is_chardev(int fd, unsigned major_nr, unsigned minor_nr)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == major_nr &&
	       minor(st.st_rdev) == minor_nr;
}

static int grandchild(void *arg)
{
	(void)arg;
	test_usr1_wait();
	if (!is_chardev(200, 1, 5))
		return 20;                  /* the root's /dev/zero is not in our table */
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0 || dup2(fd, 202) != 202)
		return 21;
	close(fd);
	return 0;
}

static int child(void *arg)
{
	int status;
	pid_t gkid = *(pid_t *)arg;

	test_usr1_wait();
	if (kill(gkid, SIGUSR1) || waitpid(gkid, &status, __WALL) != gkid)
		return 10;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return WIFEXITED(status) ? WEXITSTATUS(status) : 11;
	if (!is_chardev(200, 1, 5) || !is_chardev(202, 1, 3))
		return 12;                  /* fds opened by the others are not in our table */
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0 || dup2(fd, 201) != 201)
		return 13;
	close(fd);
	if (lseek(data_fd, 0, SEEK_CUR) != 10)
		return 14;
	if (write(data_fd, "moved", 5) != 5)
		return 15;
	return 0;
}

/* clone with CLONE_FILES on a fresh stack; the child calls fn(arg) and exits with its result */
static pid_t clone_files(int (*fn)(void *), void *arg, int exit_signal)
{
	char *stack = malloc(STACK_SIZE);

	if (!stack)
		test_abort("malloc: %s", strerror(errno));
	return clone(fn, stack + STACK_SIZE, CLONE_FILES | exit_signal, arg);
}

static int child_start(void *arg)
{
	pid_t *pids = arg;

	pids[1] = clone_files(grandchild, NULL, SIGCHLD);
	if (pids[1] < 0)
		return 30;
	/* tell the root the grandchild's pid through the shared pipe (fd table, not memory, is shared) */
	if (write(pids[2], &pids[1], sizeof(pids[1])) != sizeof(pids[1]))
		return 31;
	return child(&pids[1]);
}

int main(int argc, char **argv)
{
	pid_t pids[3];
	int p[2];

	test_init(argc, argv);
	test_usr1_init();
	data_fd = open(test_path(".data"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (data_fd < 0 || write(data_fd, "0123456789", 10) != 10)
		test_abort("data file: %s", strerror(errno));
	if (pipe(p))
		test_abort("pipe: %s", strerror(errno));
	pids[2] = p[1];
	pids[0] = clone_files(child_start, pids, SIGCHLD);
	if (pids[0] < 0)
		test_abort("clone: %s", strerror(errno));
	if (read(p[0], &pids[1], sizeof(pids[1])) != sizeof(pids[1]))
		test_abort("no grandchild pid from the child");
	close(p[0]);
	close(p[1]);
	test_write_pids(pids, 2);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(data_fd);
	int fd = open("/dev/zero", O_RDONLY);
	if (fd < 0 || dup2(fd, 200) != 200)
		fail("open /dev/zero at fd 200: %s", strerror(errno));
	close(fd);
	kill(pids[0], SIGUSR1);
	int code = test_reap(pids[0], "the child");
	if (code > 0)
		fail("a child's check failed: exit %d (1x: child, 2x: grandchild)", code);
	if (!is_chardev(201, 1, 3) || !is_chardev(202, 1, 3))
		fail("fds 201/202 the children opened are not in the root's table");
	for (int n = 203; n < 65536; n++)
		if (fcntl(n, F_GETFD) != -1) {
			fail("fd %d is open: left over from the restore?", n);
			break;
		}
	off_t off = lseek(data_fd, 0, SEEK_CUR);
	if (off != 15)
		fail("data file offset %ld, expected 15", (long)off);
	return test_finish();
}
