/*
 * stopped_threads: a child with two threads, stopped by SIGSTOP.  crpy cannot dump a stopped
 * task with several threads yet, so the dump must fail with one line naming it and leave the
 * tree untouched (tests/zdtm/desc.py: dump_fails).  Then the child is still stopped (T), and
 * SIGCONT wakes it: its handler runs and it exits 17.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t continued;

static void on_cont(int sig) { (void)sig; continued = 1; }

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	pid_t kid;

	test_init(argc, argv);
	kid = test_fork();
	if (kid == 0) {
		pthread_t th;
		sigset_t cont, before;

		/* SIGCONT's handler runs in this thread only, and only inside sigsuspend: blocked
		 * here (the idle thread inherits the block), it still continues the stopped task,
		 * and a pause() could miss it (run on the other thread, or just before the pause) */
		sigemptyset(&cont);
		sigaddset(&cont, SIGCONT);
		sigprocmask(SIG_BLOCK, &cont, &before);
		signal(SIGCONT, on_cont);
		if (pthread_create(&th, NULL, idle_thread, NULL))
			_exit(1);
		raise(SIGSTOP);
		while (!continued)
			sigsuspend(&before);
		_exit(17);
	}
	wait_proc_state(kid, 'T');
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		kill(kid, SIGKILL);
	expect_proc_state(kid, 'T');
	kill(kid, SIGCONT);
	int code = test_reap(kid, "the child");
	if (code >= 0 && code != 17)
		fail("the child did not exit 17 after SIGCONT (exit %d)", code);
	return test_finish();
}
