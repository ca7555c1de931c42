"""Threads end to end: a real multi-threaded C program dumped by `crpy dump` and brought back
by `crpy restore` (issue 3 point 2).

The program runs 8 threads each spinning on its own FPU and AVX values (named spin0..spin7 with
pthread_setname_np), one thread blocked in a futex wait and one in pthread_cond_timedwait.  On
SIGTERM it checks that every spinner still runs and never saw a wrong register value, that the
condition waiter keeps waking from its timeouts and that the futex waiter wakes when woken, and
writes PASS or FAIL with the reasons to its outfile.  After a restore the TIDs and thread names
and nice values must be the same and no crpy mapping may be left.
"""

import os

import pytest
from tests.unit.crhelpers import SelfCheckingTarget, build_c, wait_for

THREADS_C = r"""
#define _GNU_SOURCE
/* threads test target: 8 FPU/AVX spinners, a futex waiter, a pthread_cond_timedwait waiter */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <string.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <time.h>
#include <errno.h>
#include <sys/resource.h>

#define NSPIN 8
static volatile int stop;
static volatile long counts[NSPIN];
static volatile int bad[NSPIN];
static int futex_word;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int cond_wakeups, futex_woken;

__attribute__((target("avx2"))) static void *spin(void *arg)
{
	long i = (long)arg;
	char name[16];
	snprintf(name, sizeof name, "spin%ld", i);
	pthread_setname_np(pthread_self(), name);
	setpriority(PRIO_PROCESS, gettid(), (int)i % 4);   /* per-thread nice values */
	__m256d v = _mm256_set1_pd((double)i + 0.5);
	double x = i * 3.25;
	while (!stop) {
		__m256d w;
		asm volatile("" : "+x"(v));
		w = v;
		double out[4];
		_mm256_storeu_pd(out, w);
		for (int k = 0; k < 4; k++)
			if (out[k] != (double)i + 0.5) bad[i] = 1;
		asm volatile("" : "+x"(x));
		if (x != i * 3.25) bad[i] = 2;
		counts[i]++;
	}
	return NULL;
}

static void *futex_waiter(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
		syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	futex_woken = 1;
	return NULL;
}

static void *cond_waiter(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (!stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
		pthread_cond_timedwait(&cv, &mu, &ts);
		cond_wakeups++;
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

static volatile sig_atomic_t got_term;
static void on_term(int s) { (void)s; got_term = 1; }

int main(int argc, char **argv)
{
	if (argc > 1) freopen(argv[1], "a", stdout);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t[NSPIN + 2];
	signal(SIGTERM, on_term);
	for (long i = 0; i < NSPIN; i++) pthread_create(&t[i], NULL, spin, (void *)i);
	pthread_create(&t[NSPIN], NULL, futex_waiter, NULL);
	pthread_create(&t[NSPIN + 1], NULL, cond_waiter, NULL);
	printf("ready\n"); fflush(stdout);
	while (!got_term) pause();
	long before[NSPIN];
	for (int i = 0; i < NSPIN; i++) before[i] = counts[i];
	int cw = cond_wakeups;
	usleep(300000);
	int fails = 0;
	for (int i = 0; i < NSPIN; i++) {
		if (counts[i] == before[i]) { printf("thread %d not running\n", i); fails++; }
		if (bad[i]) { printf("thread %d saw bad FPU/AVX value %d\n", i, bad[i]); fails++; }
	}
	if (cond_wakeups - cw < 2) { printf("cond waiter woke %d times\n", cond_wakeups - cw); fails++; }
	__atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	stop = 1;
	pthread_mutex_lock(&mu); pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu);
	for (int i = 0; i < NSPIN + 2; i++) pthread_join(t[i], NULL);
	if (!futex_woken) { printf("futex waiter not woken\n"); fails++; }
	printf(fails ? "FAIL\n" : "PASS\n");
	return fails ? 1 : 0;
}
"""


@pytest.fixture(scope="module")
def threads_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("threads"), "threads", THREADS_C, "-O1", "-pthread")


def thread_names(pid):
    """{tid: (name, nice)}"""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])
        out[int(tid)] = (name, nice)
    return out


def test_threads_keep_tids_names_registers_and_waits(threads_bin, tmp_path):
    with SelfCheckingTarget(threads_bin, tmp_path) as t:
        pid = t.pid
        names = wait_for(lambda: (lambda n: n if sorted(v for v in n.values() if v[0].startswith("spin")) ==
                                  [(f"spin{i}", i % 4) for i in range(8)] else None)(thread_names(pid)),
                         what="the spinners to name themselves and set their nice values")
        assert len(names) == 11
        for cycle in range(2):              # the second dump is of the restored task
            images = tmp_path / f"img{cycle}"
            t.dump(images)
            assert sorted(f for f in os.listdir(images) if f.startswith("core-")) == \
                sorted(f"core-{tid}.img" for tid in names)
            t.restore(images)
            assert thread_names(pid) == names
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
            assert "crpy" not in maps and "restorer" not in maps
        t.verdict()
