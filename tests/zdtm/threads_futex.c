/*
 * threads_futex: two threads blocked in FUTEX_WAIT (no timeout) and two in pthread_cond_timedwait
 * with a deadline an hour away.  After SIGTERM the main thread wakes them: each must wake (join
 * within 5 s), the cond waiters without ETIMEDOUT, and every thread keeps its tid.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NFUTEX 2
#define NCOND 2

struct waiter {
	pthread_t th;
	int idx;
	pid_t tid_before, tid_after;
	volatile int started;
	int word;        /* futex word: 1 = wake */
	int timedout, woke;
};

static struct waiter w[NFUTEX + NCOND];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cond_go;

static void *futex_waiter(void *arg)
{
	struct waiter *me = arg;
	me->tid_before = gettid();
	me->started = 1;
	while (!__atomic_load_n(&me->word, __ATOMIC_SEQ_CST))
		syscall(SYS_futex, &me->word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	me->woke = 1;
	me->tid_after = gettid();
	return NULL;
}

static void *cond_waiter(void *arg)
{
	struct waiter *me = arg;
	struct timespec deadline;

	me->tid_before = gettid();
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 3600;
	pthread_mutex_lock(&mu);
	me->started = 1;
	while (!cond_go) {
		int rc = pthread_cond_timedwait(&cv, &mu, &deadline);
		if (rc == ETIMEDOUT) {
			me->timedout = 1;
			break;
		}
	}
	pthread_mutex_unlock(&mu);
	me->woke = !me->timedout;
	me->tid_after = gettid();
	return NULL;
}

static int in_wait(pid_t tid)
{
	char path[64], buf[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
	return read_whole(path, buf, sizeof(buf)) > 0 && strstr(buf, "futex");
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	for (int i = 0; i < NFUTEX + NCOND; i++) {
		w[i].idx = i;
		if (pthread_create(&w[i].th, NULL, i < NFUTEX ? futex_waiter : cond_waiter, &w[i]))
			test_abort("pthread_create failed");
	}
	for (int i = 0; i < NFUTEX + NCOND; i++)
		for (int n = 0; !w[i].started || !in_wait(w[i].tid_before); n++) {
			if (n > 5000)
				test_abort("thread %d never blocked in a futex", i);
			usleep(1000);
		}
	test_msg("%d futex waiters, %d cond_timedwait waiters", NFUTEX, NCOND);
	test_daemon();

	test_waitsig();
	for (int i = 0; i < NFUTEX; i++) {
		if (zdtm_break && i == 1)
			continue;
		__atomic_store_n(&w[i].word, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &w[i].word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
	pthread_mutex_lock(&mu);
	cond_go = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < NFUTEX + NCOND; i++) {
		struct timespec limit;
		clock_gettime(CLOCK_REALTIME, &limit);
		limit.tv_sec += 5;
		if (pthread_timedjoin_np(w[i].th, NULL, &limit)) {
			fail("thread %d (%s) did not wake within 5 s", i, i < NFUTEX ? "futex" : "cond");
			continue;
		}
		if (w[i].timedout)
			fail("thread %d: pthread_cond_timedwait timed out an hour early", i);
		if (w[i].tid_before != w[i].tid_after)
			fail("thread %d: tid %d became %d", i, w[i].tid_before, w[i].tid_after);
	}
	return test_finish();
}
