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

static void add(long *counter, int n)
{
	for (int i = 0; i < n; i++)
		__atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
}

int main(int argc, char **argv)
{
	pid_t kids[NKIDS];
	long *counter;

	test_init(argc, argv);
	counter = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counter == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	test_usr1_init();
	add(counter, 100);
	for (int i = 0; i < NKIDS; i++) {
		kids[i] = test_fork();
		if (kids[i] == 0) {
			add(counter, 100);
			test_usr1_wait();
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
	for (int i = 0; i < NKIDS; i++) {
		int code = test_reap(kids[i], "child");
		if (code > 0)
			fail("child %d exited %d", kids[i], code);
	}
	long got = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
	if (got != 1100 * (NKIDS + 1))
		fail("counter is %ld, want %d", got, 1100 * (NKIDS + 1));
	return test_finish();
}
