/*
 * runclock.h: a timer test's clock of its own running time (header only).  It advances in
 * CLOCK_MONOTONIC steps of 10 ms; a gap over RUNCLOCK_FROZEN_GAP (300 ms) between two steps is time
 * the task spent frozen by a dump, not counted as running.  A timer armed for T s must fire after
 * T s of running time: not early because frozen time was counted (runclock_slack() allows a
 * little per freeze, far less than the freeze itself), not much later.
 */
#ifndef ZDTM_RUNCLOCK_H
#define ZDTM_RUNCLOCK_H

#include <time.h>

#define RUNCLOCK_FROZEN_GAP 0.3

static struct {
	double running, frozen, last; /* seconds running, seconds frozen, the last step's time */
	int freezes;
} runclock;

static inline double clock_seconds(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void runclock_start(void)
{
	runclock.last = clock_seconds(CLOCK_MONOTONIC);
}

/* Sleep one step and count it as running, or as frozen if it took far longer. */
static inline void runclock_step(void)
{
	struct timespec step = { 0, 10 * 1000 * 1000 };

	nanosleep(&step, NULL);
	double t = clock_seconds(CLOCK_MONOTONIC), d = t - runclock.last;
	runclock.last = t;
	if (d < RUNCLOCK_FROZEN_GAP) {
		runclock.running += d;
	} else {
		runclock.frozen += d;
		runclock.freezes++;
	}
}

/* How early (in running time) a timer may fire: 0.15 s, and per freeze 0.25 s up to half the
 * frozen time. */
static inline double runclock_slack(void)
{
	double per_freeze = 0.25 * runclock.freezes;

	return 0.15 + (per_freeze < runclock.frozen / 2 ? per_freeze : runclock.frozen / 2);
}

#endif
