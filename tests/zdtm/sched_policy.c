/*
 * sched_policy: scheduling policies, priorities, nice values and SCHED_RESET_ON_FORK, per process
 * and per thread.  The test itself runs SCHED_BATCH at nice 7; its children run SCHED_IDLE at
 * nice 3, SCHED_FIFO 10 at nice 4 with SCHED_RESET_ON_FORK, and SCHED_RR 5 at nice -3; two of its threads run SCHED_RR 3
 * and SCHED_OTHER at nice 12.  After restore sched_getattr() of every one of them must give the
 * same policy, flags, rt priority and nice.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SCHED_BATCH
#define SCHED_BATCH 3
#endif
#ifndef SCHED_IDLE
#define SCHED_IDLE 5
#endif
#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif
#define SCHED_FLAG_RESET_ON_FORK 0x01

struct attr {                    /* struct sched_attr, first version (48 bytes) */
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

struct want {
	const char *what;
	pid_t tid;
	int policy, prio, nice, reset_on_fork;
};

#define NKIDS 3
#define NTHREADS 2

static struct want wants[1 + NKIDS + NTHREADS];
static volatile pid_t thread_tids[NTHREADS];
static volatile int threads_set;

static int set_sched(pid_t tid, int policy, int prio, int nice)
{
	struct sched_param sp = { .sched_priority = prio };

	/* nice first: a real-time task keeps one too (it counts again if the policy goes back) */
	if (setpriority(PRIO_PROCESS, tid, nice) != 0)
		return -1;
	return syscall(SYS_sched_setscheduler, tid, policy, &sp);
}

static void *thread_main(void *arg)
{
	long i = (long)arg;
	struct want *w = &wants[1 + NKIDS + i];

	if (set_sched(0, w->policy, w->prio, w->nice) != 0)
		test_abort("thread %ld: sched_setscheduler/setpriority: %s", i, strerror(errno));
	thread_tids[i] = gettid();
	__atomic_fetch_add(&threads_set, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return NULL;
}

static void check(const struct want *w)
{
	struct attr a;

	memset(&a, 0, sizeof(a));
	if (syscall(SYS_sched_getattr, w->tid, &a, sizeof(a), 0) != 0) {
		fail("%s %d: sched_getattr: %s", w->what, w->tid, strerror(errno));
		return;
	}
	/* sched_getattr gives the nice of fair policies only; getpriority that of any */
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, w->tid);
	if (errno)
		fail("%s %d: getpriority: %s", w->what, w->tid, strerror(errno));
	int reset = !!(a.flags & SCHED_FLAG_RESET_ON_FORK);
	if ((int)a.policy != w->policy || (int)a.priority != w->prio || reset != w->reset_on_fork ||
	    nice != w->nice)
		fail("%s %d: policy %u prio %u nice %d reset_on_fork %d, want policy %d prio %d nice %d "
		     "reset_on_fork %d", w->what, w->tid, a.policy, a.priority, nice, reset,
		     w->policy, w->prio, w->nice, w->reset_on_fork);
}

int main(int argc, char **argv)
{
	pid_t kids[NKIDS];
	pthread_t th[NTHREADS];

	test_init(argc, argv);
	wants[0] = (struct want){ "the test", 0, SCHED_BATCH, 0, 7, 0 };
	wants[1] = (struct want){ "SCHED_IDLE child", 0, SCHED_IDLE, 0, 3, 0 };
	wants[2] = (struct want){ "SCHED_FIFO child", 0, SCHED_FIFO, 10, 4, 1 };
	wants[3] = (struct want){ "SCHED_RR child", 0, SCHED_RR, 5, -3, 0 };
	wants[4] = (struct want){ "SCHED_RR thread", 0, SCHED_RR, 3, 0, 0 };
	wants[5] = (struct want){ "nice 12 thread", 0, SCHED_OTHER, 0, 12, 0 };

	for (int i = 0; i < NKIDS; i++) {
		struct want *w = &wants[1 + i];
		int flag = w->reset_on_fork ? SCHED_RESET_ON_FORK : 0;

		kids[i] = test_fork();
		if (kids[i] == 0) {
			if (set_sched(0, w->policy | flag, w->prio, w->nice) != 0)
				test_abort("%s: sched_setscheduler/setpriority: %s", w->what, strerror(errno));
			for (;;)
				pause();
		}
		w->tid = kids[i];
	}
	if (set_sched(0, SCHED_BATCH, 0, 7) != 0)
		test_abort("SCHED_BATCH: %s", strerror(errno));
	wants[0].tid = getpid();
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, thread_main, (void *)i) != 0)
			test_abort("pthread_create failed");
	while (__atomic_load_n(&threads_set, __ATOMIC_SEQ_CST) < NTHREADS)
		usleep(1000);
	for (int i = 0; i < NTHREADS; i++)
		wants[1 + NKIDS + i].tid = thread_tids[i];
	/* the children set their policy themselves: wait until each has */
	for (int i = 0; i < NKIDS; i++) {
		for (int n = 0; n < 5000 && (syscall(SYS_sched_getscheduler, kids[i]) & ~SCHED_RESET_ON_FORK) != wants[1 + i].policy; n++)
			usleep(1000);
	}
	test_write_pids(kids, NKIDS);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		struct sched_param sp = { .sched_priority = 0 };
		sched_setscheduler(kids[1], SCHED_OTHER, &sp);
	}
	for (unsigned i = 0; i < sizeof(wants) / sizeof(wants[0]); i++)
		check(&wants[i]);
	for (int i = 0; i < NKIDS; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	return test_finish();
}
