/*
 * itimers: interval timers.  ITIMER_REAL fires every 50 ms (a SIGALRM handler counts) and
 * ITIMER_PROF is armed with a long value it never reaches.  After SIGTERM the real timer must
 * still fire (the count goes on rising), both must still be armed with their intervals, and the
 * remaining PROF value may only have gone down.
 */
#include "lib/zdtmtst.h"

#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t ticks;
static struct itimerval prof_before;

static void on_alarm(int sig) { (void)sig; ticks++; }

static long usec(const struct timeval *t) { return t->tv_sec * 1000000L + t->tv_usec; }

int main(int argc, char **argv)
{
	struct itimerval real = {{0, 50000}, {0, 50000}}, prof = {{100, 0}, {1000, 0}}, now;
	struct sigaction sa;
	struct timespec pause = {0, 300 * 1000 * 1000};
	int at_stop;

	test_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_PROF, &prof, NULL))
		test_abort("setitimer failed");
	getitimer(ITIMER_PROF, &prof_before);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		struct itimerval off = {{0, 0}, {0, 0}};
		setitimer(ITIMER_REAL, &off, NULL);
	}
	at_stop = ticks;
	while (nanosleep(&pause, &pause))
		;
	if (ticks - at_stop < 2)
		fail("ITIMER_REAL fired %d times in 300 ms after SIGTERM", ticks - at_stop);
	getitimer(ITIMER_REAL, &now);
	if (usec(&now.it_interval) != 50000)
		fail("ITIMER_REAL interval %ld us, want 50000", usec(&now.it_interval));
	getitimer(ITIMER_PROF, &now);
	if (usec(&now.it_interval) != 100000000L)
		fail("ITIMER_PROF interval %ld us, want 100 s", usec(&now.it_interval));
	if (usec(&now.it_value) <= 0 || usec(&now.it_value) > usec(&prof_before.it_value))
		fail("ITIMER_PROF value %ld us, was %ld us", usec(&now.it_value), usec(&prof_before.it_value));
	test_msg("%d SIGALRMs in all", (int)ticks);
	return test_finish();
}
