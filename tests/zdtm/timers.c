/*
 * timers: a one-shot ITIMER_REAL and a one-shot POSIX timer (CLOCK_MONOTONIC, SIGRTMIN+4 with
 * value 77), both armed for 2.5 s, fire after the restore at about the time left.  The test keeps
 * a clock of its own running time (lib/runclock.h: CLOCK_MONOTONIC steps of 10 ms; a gap over
 * 300 ms is time spent frozen by a dump) and checks that each timer fires once, after 2.5 s of
 * running time: not early because frozen time was counted (a little slack per freeze, far less
 * than the freeze itself), not more than 1 s late.
 */
#include "lib/zdtmtst.h"
#include "lib/runclock.h"

#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ARMED 2.5

static volatile sig_atomic_t alrm_count, rt_count, rt_value, rt_code;
static double alrm_at = -1, rt_at = -1;

static void on_alrm(int sig) { (void)sig; alrm_count++; }

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	rt_count++;
	rt_value = si->si_value.sival_int;
	rt_code = si->si_code;
}

/* Advance the running-time clock by one poll step; note when each timer fired first. */
static void tick(void)
{
	runclock_step();
	if (alrm_count && alrm_at < 0)
		alrm_at = runclock.running;
	if (rt_count && rt_at < 0)
		rt_at = runclock.running;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct sigevent sev;
	timer_t tid;
	struct itimerval it = { { 0, 0 }, { 2, 500000 } };
	struct itimerspec its = { { 0, 0 }, { 2, 500000000 } };

	test_init(argc, argv);
	signal(SIGALRM, on_alrm);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN + 4, &sa, NULL);
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 4;
	sev.sigev_value.sival_int = 77;
	if (timer_create(CLOCK_MONOTONIC, &sev, &tid))
		test_abort("timer_create: %s", strerror(errno));
	runclock_start();
	if (setitimer(ITIMER_REAL, &it, NULL) || timer_settime(tid, 0, &its, NULL))
		test_abort("arming the timers: %s", strerror(errno));
	test_daemon();

	while (!zdtm_stop)
		tick();
	if (zdtm_break) {
		struct itimerval soon = { { 0, 0 }, { 0, 1000 } };
		alrm_count = 0;
		alrm_at = -1;
		setitimer(ITIMER_REAL, &soon, NULL);
	}
	double limit = clock_seconds(CLOCK_MONOTONIC) + ARMED + 3;
	while ((alrm_at < 0 || rt_at < 0) && clock_seconds(CLOCK_MONOTONIC) < limit)
		tick();
	tick();
	test_msg("running time %.2f s: ITIMER_REAL fired at %.2f s (%d times), POSIX timer at %.2f s (%d times)",
		 runclock.running, alrm_at, alrm_count, rt_at, rt_count);
	if (alrm_at < 0 || rt_at < 0)
		fail("a timer did not fire (itimer at %.2f, POSIX timer at %.2f)", alrm_at, rt_at);
	double slack = runclock_slack();
	test_msg("%d freezes, %.2f s frozen: a timer may fire %.2f s early", runclock.freezes, runclock.frozen, slack);
	if (alrm_at >= 0 && (alrm_at < ARMED - slack || alrm_at > ARMED + 1))
		fail("ITIMER_REAL fired after %.2f s of running time, armed for %.1f s", alrm_at, ARMED);
	if (rt_at >= 0 && (rt_at < ARMED - slack || rt_at > ARMED + 1))
		fail("the POSIX timer fired after %.2f s of running time, armed for %.1f s", rt_at, ARMED);
	if (alrm_count > 1 || rt_count > 1)
		fail("a one-shot timer fired more than once (%d, %d)", alrm_count, rt_count);
	if (rt_count && (rt_value != 77 || rt_code != SI_TIMER))
		fail("POSIX timer signal: value %d code %d, want 77 and SI_TIMER", (int)rt_value, (int)rt_code);
	return test_finish();
}
