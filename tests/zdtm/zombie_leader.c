/*
 * zombie_leader: a child whose main thread has called pthread_exit() while its second thread
 * runs on: /proc shows the child as a zombie (Z), yet it is alive.  crpy restores a task only
 * with its main thread, so the dump must fail with one line and leave the tree untouched
 * (tests/zdtm/desc.py: dump_fails).  Then the child's thread still runs: it ends the child with
 * exit 23 when the test asks (SIGUSR1).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg)
{
	(void)arg;
	test_usr1_wait();
	exit(23);
}

int main(int argc, char **argv)
{
	pthread_t th;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		if (pthread_create(&th, NULL, worker, NULL))
			_exit(1);
		pthread_exit(NULL);
	}
	wait_proc_state(kid, 'Z');
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		kill(kid, SIGKILL);
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "the child");
	if (code >= 0 && code != 23)
		fail("the child exited %d, want 23 from its thread", code);
	return test_finish();
}
