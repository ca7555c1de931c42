/*
 * timerfd: five timerfds.  A: CLOCK_MONOTONIC one-shot armed for 2.5 s (O_NONBLOCK): fires once
 * after 2.5 s of the test's running time (frozen time not counted, as in the timers test).
 * B: CLOCK_REALTIME with TFD_TIMER_ABSTIME, due in 1 h, interval 1 h: still absolute, interval
 * exact, time left about 1 h less the running time.  C: CLOCK_BOOTTIME, expired once with its
 * tick not read, next in 1 h: the tick is still there.  D: disarmed, 5 ticks set by
 * TFD_IOC_SET_TICKS and not read (O_NONBLOCK, close-on-exec): a read gives 5.
 * E: disarmed, never armed, blocking: still disarmed, nothing to read.
 */
#include "lib/zdtmtst.h"
#include "lib/runclock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define ARMED 2.5
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

static int A, B, C, D, E;
static double a_at = -1;
static int a_count;

/* Advance the running-time clock (lib/runclock.h) by one poll step; count A's ticks. */
static void tick(void)
{
	uint64_t n;

	runclock_step();
	if (read(A, &n, sizeof(n)) == sizeof(n)) {
		a_count += n;
		if (a_at < 0)
			a_at = runclock.running;
	}
}

static void arm(int fd, int flags, double value, double interval)
{
	struct itimerspec its = { { (time_t)interval, 0 }, { (time_t)value, (long)((value - (time_t)value) * 1e9) } };
	if (timerfd_settime(fd, flags, &its, NULL))
		test_abort("timerfd_settime: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	struct itimerspec its;
	uint64_t n = 5;

	test_init(argc, argv);
	A = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	B = timerfd_create(CLOCK_REALTIME, 0);
	C = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
	D = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	E = timerfd_create(CLOCK_MONOTONIC, 0);
	if (A < 0 || B < 0 || C < 0 || D < 0 || E < 0)
		test_abort("timerfd_create: %s", strerror(errno));
	if (ioctl(D, TFD_IOC_SET_TICKS, &n))
		test_abort("TFD_IOC_SET_TICKS: %s", strerror(errno));
	arm(B, TFD_TIMER_ABSTIME, clock_seconds(CLOCK_REALTIME) + 3600, 3600);
	arm(C, 0, 0.001, 3600);
	usleep(20000);
	runclock_start();
	arm(A, 0, ARMED, 0);
	test_daemon();

	while (!zdtm_stop)
		tick();
	if (zdtm_break)
		read(D, &n, sizeof(n));
	double limit = clock_seconds(CLOCK_MONOTONIC) + ARMED + 3;
	while (a_at < 0 && clock_seconds(CLOCK_MONOTONIC) < limit)
		tick();
	double slack = runclock_slack();
	test_msg("running %.2f s, %d freezes, %.2f s frozen: A fired at %.2f s (%d ticks)", runclock.running,
		 runclock.freezes, runclock.frozen, a_at, a_count);
	if (a_at < 0 || a_at < ARMED - slack || a_at > ARMED + 1 || a_count != 1)
		fail("A fired at %.2f s of running time (%d ticks), armed for %.1f s", a_at, a_count, ARMED);
	if (timerfd_gettime(B, &its) || its.it_interval.tv_sec != 3600 || its.it_interval.tv_nsec)
		fail("B lost its 1 h interval");
	double left = its.it_value.tv_sec + its.it_value.tv_nsec / 1e9;
	if (left > 3600 - runclock.running + 1 || left < 3600 - runclock.running - 60)
		fail("B has %.1f s left after %.1f s of running time, armed for 3600 s", left, runclock.running);
	char info[512], want[64];
	snprintf(want, sizeof(want), "/proc/self/fdinfo/%d", B);
	if (read_whole(want, info, sizeof(info)) < 0 || !strstr(info, "settime flags: 01"))
		fail("B is no longer TFD_TIMER_ABSTIME: %s", info);
	if (read(C, &n, sizeof(n)) != sizeof(n) || n != 1)
		fail("C lost its unread tick");
	if (timerfd_gettime(C, &its) || its.it_interval.tv_sec != 3600 || its.it_value.tv_sec < 3500)
		fail("C is not armed for its next tick in about 1 h");
	if (read(D, &n, sizeof(n)) != sizeof(n) || n != 5)
		fail("D lost its 5 ticks not yet read");
	if (!(fcntl(D, F_GETFD) & FD_CLOEXEC) || (fcntl(E, F_GETFL) & O_NONBLOCK) || !(fcntl(C, F_GETFL) & O_NONBLOCK))
		fail("flags changed");
	if (timerfd_gettime(E, &its) || its.it_value.tv_sec || its.it_value.tv_nsec)
		fail("E is armed");
	return test_finish();
}
