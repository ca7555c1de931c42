/*
 * sigthreads: blocked signals pending at dump time, per process and per thread, with their siginfo.
 * Process-wide: SIGUSR1 (standard, from kill) and SIGRTMIN+1 queued twice with values 111, 222.
 * Main thread only: SIGRTMIN+3 with value 444 (rt_tgsigqueueinfo).  A second thread: SIGUSR2
 * (tgkill) and SIGRTMIN+2 with value 333.  After SIGTERM each thread checks its pending set and
 * takes its signals with sigtimedwait: numbers, order, si_code, si_pid and si_value.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pid_t thread_tid;
static volatile int thread_go, thread_ready;
static char thread_fail[256];

/* Take signal `sig` now; check its code (1: not checked) and value (value < 0: not checked). */
static const char *take(int sig, int code, int value, char *why, size_t size)
{
	struct timespec zero = { 0, 0 };
	sigset_t set;
	siginfo_t si;

	sigemptyset(&set);
	sigaddset(&set, sig);
	int got = sigtimedwait(&set, &si, &zero);
	if (got != sig)
		snprintf(why, size, "signal %d not pending (%s)", sig, strerror(errno));
	else if (code != 1 && si.si_code != code)
		snprintf(why, size, "signal %d: si_code %d, want %d", sig, si.si_code, code);
	else if (si.si_pid != getpid())
		snprintf(why, size, "signal %d: si_pid %d, want %d", sig, si.si_pid, getpid());
	else if (value >= 0 && si.si_value.sival_int != value)
		snprintf(why, size, "signal %d: value %d, want %d", sig, si.si_value.sival_int, value);
	else
		return NULL;
	return why;
}

static int pending(int sig)
{
	sigset_t set;
	sigpending(&set);
	return sigismember(&set, sig);
}

static void *second_thread(void *arg)
{
	(void)arg;
	thread_tid = gettid();
	thread_ready = 1;
	while (!thread_go)
		usleep(1000);
	const char *why = NULL;
	char buf[200];
	for (int s = 0; s < 4 && !why; s++) {
		int want[4] = { SIGUSR2, SIGRTMIN + 2, SIGUSR1, SIGRTMIN + 1 };
		if (!pending(want[s])) {
			snprintf(buf, sizeof(buf), "signal %d not in the thread's sigpending()", want[s]);
			why = buf;
		}
	}
	if (!why)
		why = take(SIGUSR2, 1, -1, buf, sizeof(buf));   /* tgkill: SI_TKILL or SI_USER by kernel */
	if (!why)
		why = take(SIGRTMIN + 2, SI_QUEUE, 333, buf, sizeof(buf));
	if (why)
		snprintf(thread_fail, sizeof(thread_fail), "thread: %s", why);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	sigset_t block;
	union sigval v;
	char why[200];

	test_init(argc, argv);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	for (int s = 1; s <= 3; s++)
		sigaddset(&block, SIGRTMIN + s);
	sigprocmask(SIG_BLOCK, &block, NULL);   /* inherited by the thread */
	if (pthread_create(&th, NULL, second_thread, NULL))
		test_abort("pthread_create failed");
	while (!thread_ready)
		usleep(1000);
	kill(getpid(), SIGUSR1);
	v.sival_int = 111;
	sigqueue(getpid(), SIGRTMIN + 1, v);
	v.sival_int = 222;
	sigqueue(getpid(), SIGRTMIN + 1, v);
	if (queue_to_thread(gettid(), SIGRTMIN + 3, 444))
		test_abort("rt_tgsigqueueinfo: %s", strerror(errno));
	syscall(SYS_tgkill, getpid(), thread_tid, SIGUSR2);
	if (queue_to_thread(thread_tid, SIGRTMIN + 2, 333))
		test_abort("rt_tgsigqueueinfo: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		struct timespec zero = { 0, 0 };
		siginfo_t si;
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, SIGRTMIN + 1);
		sigtimedwait(&one, &si, &zero);
	}
	thread_go = 1;
	pthread_join(th, NULL);
	if (thread_fail[0])
		fail("%s", thread_fail);
	if (pending(SIGUSR2) || pending(SIGRTMIN + 2))
		fail("the thread's private signals are pending in the main thread");
	const char *bad = take(SIGRTMIN + 3, SI_QUEUE, 444, why, sizeof(why));
	if (!bad)
		bad = take(SIGUSR1, SI_USER, -1, why, sizeof(why));
	if (!bad)
		bad = take(SIGRTMIN + 1, SI_QUEUE, 111, why, sizeof(why));
	if (!bad)
		bad = take(SIGRTMIN + 1, SI_QUEUE, 222, why, sizeof(why));
	if (bad)
		fail("main: %s", bad);
	sigpending(&block);
	for (int s = 1; s < 65; s++)
		if (s != SIGTERM && sigismember(&block, s))
			fail("signal %d still pending after all were taken", s);
	return test_finish();
}
