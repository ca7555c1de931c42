"""Signals and timers end to end (issue 3 point 4): a real C program with alarm(), a one-shot
POSIX timer (CLOCK_MONOTONIC, SIGUSR1 with a sigev value), a periodic one aimed at its main
thread (SIGEV_THREAD_ID, SIGRTMIN+1, 50 ms) and a silent one (SIGEV_NONE, CLOCK_BOOTTIME,
100 s), dumped, left frozen for a while, and restored.

After the restore the timers keep their ids, clocks, signals and notify modes (/proc/PID/timers
is the same), and the one-shots fire at about the time they had left at the dump: the frozen
time does not count as elapsed.  The program checks the rest itself (sigev value, periodic
ticks, the silent timer's remaining time, ids still valid) and writes PASS or FAIL.
"""

import time

import pytest
from tests.unit.crhelpers import SelfCheckingTarget, build_c

TIMERS_C = r"""
#define _GNU_SOURCE
/* timers test target: alarm(), a one-shot and a periodic POSIX timer, a SIGEV_NONE timer */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarm_fired, oneshot_fired, term;
static volatile long periodic_ticks;
static volatile double alarm_at, oneshot_at;
static volatile long oneshot_sival;
static FILE *out;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_alarm(int s) { (void)s; alarm_at = now(); alarm_fired = 1; }
static void on_usr1(int s, siginfo_t *si, void *uc) { (void)s; (void)uc; oneshot_at = now(); oneshot_sival = (long)si->si_value.sival_ptr; oneshot_fired = 1; }
static void on_rt(int s) { (void)s; periodic_ticks++; }
static void on_term(int s) { (void)s; term = 1; }

int main(int argc, char **argv)
{
	timer_t oneshot, periodic, silent;
	struct sigevent sev;
	struct sigaction sa;
	struct itimerspec its, got;
	int fails = 0;

	out = fopen(argv[1], "a");
	setvbuf(out, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm; sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_rt; sigaction(SIGRTMIN + 1, &sa, NULL);
	sa.sa_handler = on_term; sigaction(SIGTERM, &sa, NULL);
	sa.sa_sigaction = on_usr1; sa.sa_flags = SA_SIGINFO; sigaction(SIGUSR1, &sa, NULL);

	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_SIGNAL; sev.sigev_signo = SIGUSR1; sev.sigev_value.sival_ptr = (void *)0x1234;
	timer_create(CLOCK_MONOTONIC, &sev, &oneshot);
	sev.sigev_notify = SIGEV_THREAD_ID; sev.sigev_signo = SIGRTMIN + 1; sev._sigev_un._tid = gettid();
	timer_create(CLOCK_REALTIME, &sev, &periodic);
	sev.sigev_notify = SIGEV_NONE;
	timer_create(CLOCK_BOOTTIME, &sev, &silent);

	double start = now();
	alarm(3);
	its = (struct itimerspec){{0, 0}, {3, 0}};
	timer_settime(oneshot, 0, &its, NULL);
	its = (struct itimerspec){{0, 50000000}, {0, 50000000}};
	timer_settime(periodic, 0, &its, NULL);
	its = (struct itimerspec){{0, 0}, {100, 0}};
	timer_settime(silent, 0, &its, NULL);
	fprintf(out, "ready %.6f ids %ld %ld %ld\n", start, (long)oneshot, (long)periodic, (long)silent);

	while (!term || !alarm_fired || !oneshot_fired)
		pause();
	fprintf(out, "alarm %.6f\noneshot %.6f\n", alarm_at, oneshot_at);
	if (oneshot_sival != 0x1234) { fprintf(out, "bad sival %#lx\n", oneshot_sival); fails++; }
	long ticks = periodic_ticks;
	struct timespec pause_ts = {0, 300000000};
	while (nanosleep(&pause_ts, &pause_ts))
		;
	if (periodic_ticks - ticks < 3) { fprintf(out, "periodic timer: %ld ticks in 300 ms\n", periodic_ticks - ticks); fails++; }
	if (timer_gettime(silent, &got)) { fprintf(out, "SIGEV_NONE timer id lost\n"); fails++; }
	else if (got.it_value.tv_sec < 80 || got.it_value.tv_sec > 100) { fprintf(out, "SIGEV_NONE timer at %ld s\n", (long)got.it_value.tv_sec); fails++; }
	if (timer_gettime(periodic, &got) || got.it_interval.tv_nsec != 50000000) { fprintf(out, "periodic timer lost its interval\n"); fails++; }
	fprintf(out, fails ? "FAIL\n" : "PASS\n");
	return fails;
}
"""
FROZEN = 2.0


@pytest.fixture(scope="module")
def timers_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("timers"), "timers", TIMERS_C, "-O1")


def saved_timers(images, pid):
    """(alarm's remaining s, the one-shot POSIX timer's remaining s) as the dump saved them."""
    from crpy.images import framing

    core = framing.read_image(framing.image_path(str(images), "core", pid), "core")[0]
    t = core.tc.timers
    oneshot = next(p for p in t.posix if p.it_id == 0)
    return t.real.vsec + t.real.vusec / 1e6, oneshot.vsec + oneshot.vnsec / 1e9


def proc_timers(pid):
    from crpy.dump.timers import parse_proc_timers

    with open(f"/proc/{pid}/timers") as f:
        return sorted(parse_proc_timers(f.read()), key=lambda t: t["id"])


def test_timers_fire_after_restore_at_the_time_left(timers_bin, tmp_path):
    with SelfCheckingTarget(timers_bin, tmp_path) as target:
        pid = target.pid
        before = proc_timers(pid)
        assert [t["id"] for t in before] == [0, 1, 2], before
        target.dump()
        alarm_left, oneshot_left = saved_timers(target.images, pid)
        assert 0.3 < alarm_left < 3 and 0.3 < oneshot_left < 3, (alarm_left, oneshot_left)
        time.sleep(FROZEN)
        t0 = time.monotonic()
        target.restore()
        t1 = time.monotonic()
        assert proc_timers(pid) == before
        time.sleep(max(alarm_left, oneshot_left) + 0.3)
        text = target.verdict()
        fired = dict(line.split() for line in text.splitlines() if line.startswith(("alarm ", "oneshot ")))
        for name, left in (("alarm", alarm_left), ("oneshot", oneshot_left)):
            at = float(fired[name])
            # late by up to 1.5 s (a loaded machine runs the handler late), still less than FROZEN:
            # a timer that counted the frozen time would fire FROZEN s early or late
            assert t0 + left - 0.25 <= at <= t1 + left + 1.5, (name, t0, t1, left, at)
