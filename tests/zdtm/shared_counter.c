/*
 * shared_counter: a MAP_SHARED|MAP_ANONYMOUS page holding a counter, shared by the test and three
 * children.  Each added 100 before the dump; after restore each child and the parent add 1000
 * more (atomically) and the parent sees the sum of all: 4400.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKIDS 3

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }

static void add(long *counter, int n)
{
	for (int i = 0; i < n; i++)
		__atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
}

int main(int argc, char **argv)
{
	pid_t kids[NKIDS];
	sigset_t block, wait_mask;
	long *counter;
	int status;

	test_init(argc, argv);
	counter = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counter == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	signal(SIGUSR1, on_usr1);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	add(counter, 100);
	for (int i = 0; i < NKIDS; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			test_abort("fork: %s", strerror(errno));
		if (kids[i] == 0) {
			test_forked_child();
			add(counter, 100);
			while (!go)
				sigsuspend(&wait_mask);
			add(counter, 1000);
			_exit(0);
		}
	}
	while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) != 100 * (NKIDS + 1))
		usleep(1000);
	test_write_pids(kids, NKIDS);
	test_daemon();

	test_waitsig();
	if (zdtm_break)   /* the parent's view becomes a private copy: it no longer sees the children */
		mmap(counter, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	for (int i = 0; i < NKIDS; i++)
		kill(kids[i], SIGUSR1);
	add(counter, 1000);
	for (int i = 0; i < NKIDS; i++)
		if (waitpid(kids[i], &status, 0) != kids[i] || status)
			fail("child %d ended with status 0x%x", kids[i], status);
	long got = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
	if (got != 1100 * (NKIDS + 1))
		fail("counter is %ld, want %d", got, 1100 * (NKIDS + 1));
	return test_finish();
}
