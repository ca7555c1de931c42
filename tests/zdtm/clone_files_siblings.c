/*
 * clone_files_siblings: two children share one fd table that their parent no longer has (both
 * cloned with CLONE_FILES, then the parent unshare(CLONE_FILES)s).  A restore can clone a task only
 * into its PARENT's table, so the dump must fail with one line and leave all three untouched
 * (tests/zdtm/desc.py: dump_fails).  Then the children still share: what the second opens, the
 * first sees, and the parent does not.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (256 << 10)

static volatile sig_atomic_t go, unshared;
static void on_usr1(int sig) { (void)sig; go = 1; }
static void on_usr2(int sig) { (void)sig; unshared = 1; }
static sigset_t wait_mask;

/* once the parent has its own table: drop the readiness pipe from ours (the harness waits for
 * its EOF), then wait for the check */
static void wait_go(void)
{
	while (!unshared)
		sigsuspend(&wait_mask);
	test_forked_child();
	while (!go)
		sigsuspend(&wait_mask);
}

static int opener(void *arg)              /* opens /dev/null at fd 300 */
{
	(void)arg;
	wait_go();
	int fd = open("/dev/null", O_RDWR);
	return fd >= 0 && dup2(fd, 300) == 300 ? 0 : 1;
}

static int looker(void *arg)              /* after the opener is done: fd 300 must be there */
{
	pid_t *opener_pid = arg;
	int status;

	wait_go();
	/* the opener is our sibling: poll for its fd, the parent reaps it */
	for (int i = 0; i < 500; i++) {
		if (fcntl(300, F_GETFD) != -1)
			return 0;
		usleep(10000);
	}
	(void)opener_pid;
	(void)status;
	return 2;
}

static pid_t clone_files(int (*fn)(void *), void *arg)
{
	char *stack = malloc(STACK_SIZE);

	if (!stack)
		test_abort("malloc: %s", strerror(errno));
	return clone(fn, stack + STACK_SIZE, CLONE_FILES | SIGCHLD, arg);
}

int main(int argc, char **argv)
{
	sigset_t block;
	pid_t pids[2];

	test_init(argc, argv);
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	pids[0] = clone_files(opener, NULL);
	pids[1] = clone_files(looker, &pids[0]);
	if (pids[0] < 0 || pids[1] < 0)
		test_abort("clone: %s", strerror(errno));
	if (unshare(CLONE_FILES))
		test_abort("unshare: %s", strerror(errno));
	kill(pids[0], SIGUSR2);
	kill(pids[1], SIGUSR2);
	test_write_pids(pids, 2);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		kill(pids[1], SIGKILL);
	kill(pids[0], SIGUSR1);
	kill(pids[1], SIGUSR1);
	for (int i = 0; i < 2; i++) {
		int code = test_reap(pids[i], i ? "the looker" : "the opener");
		if (code > 0)
			fail("child %d: exit %d (the children no longer share their fd table?)", i, code);
	}
	if (fcntl(300, F_GETFD) != -1)
		fail("fd 300 of the children is in the parent's own table");
	return test_finish();
}
