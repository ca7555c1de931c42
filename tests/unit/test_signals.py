"""Pending signals end to end (issue 3 point 4): a real two-threaded C program with blocked
signals of each kind pending: a kill()ed standard one and three sigqueue()d realtime ones with
values in the process's shared queue, a tkill()ed standard one and a queued realtime one in the
worker thread's private queue, a queued realtime one in the main thread's.  After dump and
restore each thread must still find exactly its own, with signal, code, value and order (the
program checks with sigtimedwait and writes PASS or FAIL); the images hold the raw siginfos.
"""

import os
import signal
import struct

import pytest
from tests.unit.crhelpers import SelfCheckingTarget, build_c

SIGNALS_C = r"""
#define _GNU_SOURCE
/* signals test target: pending signals of each kind, all blocked: a standard one and three queued
 * realtime ones with values for the process, a tkill'ed and a queued realtime one for a worker
 * thread, a queued realtime one for the main thread.  On SIGTERM each thread takes its own with
 * sigtimedwait and checks signal, code, value and order; PASS or FAIL goes to the outfile. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t term;
static volatile int worker_tid, worker_go, worker_fails = -1;
static FILE *out;

static void on_term(int s) { (void)s; term = 1; }

static int queue_to(pid_t tid, int sig, int value)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	si.si_signo = sig;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = value;
	return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si);
}

static int take(const char *who, int sig, int code, int value)
{
	sigset_t set;
	siginfo_t si;
	struct timespec zero = {0, 0};
	sigemptyset(&set);
	sigaddset(&set, sig);
	if (sigtimedwait(&set, &si, &zero) != sig) {
		fprintf(out, "%s: signal %d not pending\n", who, sig);
		return 1;
	}
	if (si.si_code != code || (code == SI_QUEUE && si.si_value.sival_int != value)) {
		fprintf(out, "%s: signal %d code %d value %d, want code %d value %d\n", who, sig, si.si_code,
			si.si_value.sival_int, code, value);
		return 1;
	}
	return 0;
}

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = gettid();
	while (!worker_go)
		usleep(1000);
	sigset_t pend;
	sigpending(&pend);
	int f = take("worker", SIGUSR2, SI_USER, 0)  /* glibc shows SI_TKILL as SI_USER */ + take("worker", SIGRTMIN + 1, SI_QUEUE, 44);
	worker_fails = f;
	return NULL;
}

int main(int argc, char **argv)
{
	sigset_t block;
	pthread_t t;
	int fails = 0;

	out = fopen(argv[1], "a");
	setvbuf(out, NULL, _IOLBF, 0);
	signal(SIGTERM, on_term);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGRTMIN);
	sigaddset(&block, SIGRTMIN + 1);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	pthread_create(&t, NULL, worker, NULL);
	while (!worker_tid)
		usleep(1000);
	kill(getpid(), SIGUSR1);
	for (int v = 11; v <= 33; v += 11)
		sigqueue(getpid(), SIGRTMIN, (union sigval){.sival_int = v});
	syscall(SYS_tgkill, getpid(), worker_tid, SIGUSR2);
	queue_to(worker_tid, SIGRTMIN + 1, 44);
	queue_to(gettid(), SIGRTMIN + 1, 55);
	fprintf(out, "ready\n");
	while (!term)
		pause();
	fails += take("main", SIGUSR1, SI_USER, 0);
	for (int v = 11; v <= 33; v += 11)
		fails += take("main", SIGRTMIN, SI_QUEUE, v);
	fails += take("main", SIGRTMIN + 1, SI_QUEUE, 55);
	sigset_t pend;
	sigpending(&pend);
	if (sigismember(&pend, SIGUSR2)) { fprintf(out, "main sees the worker's SIGUSR2\n"); fails++; }
	worker_go = 1;
	pthread_join(t, NULL);
	fails += worker_fails;
	fprintf(out, fails ? "FAIL\n" : "PASS\n");
	return fails;
}
"""
SI_QUEUE, SI_TKILL = -1, -6


@pytest.fixture(scope="module")
def signals_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("signals"), "signals", SIGNALS_C, "-O1", "-pthread")


def saved_signals(images, tid, shared=False):
    """[(signo, code, value)] of a thread's private queue (or the process's shared one)."""
    from crpy.images import framing

    core = framing.read_image(framing.image_path(str(images), "core", tid), "core")[0]
    queue = core.tc.signals_s if shared else core.thread_core.signals_p
    out = []
    for s in queue.signals:
        signo, _, code = struct.unpack_from("<iii", s.siginfo)
        out.append((signo, code, struct.unpack_from("<q", s.siginfo, 24)[0] if code == SI_QUEUE else 0))
    return out


def test_pending_signals_per_process_and_per_thread(signals_bin, tmp_path):
    with SelfCheckingTarget(signals_bin, tmp_path) as t:
        pid, images = t.pid, t.images
        worker = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid][0]
        t.dump()
        rtmin = signal.SIGRTMIN
        assert saved_signals(images, pid, shared=True) == [(10, 0, 0)] + [(rtmin, SI_QUEUE, v) for v in (11, 22, 33)]
        assert saved_signals(images, pid) == [(rtmin + 1, SI_QUEUE, 55)]
        assert saved_signals(images, worker) == [(12, SI_TKILL, 0), (rtmin + 1, SI_QUEUE, 44)]
        t.restore()
        t.verdict()
