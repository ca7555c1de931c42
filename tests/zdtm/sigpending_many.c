/*
 * sigpending_many: more pending signals than fit a fixed table: 67 real-time signals queued to
 * the process (on SIGRTMIN+1..+3, each with its own value) and 5 to the main thread alone
 * (rt_tgsigqueueinfo on SIGRTMIN+4), all blocked.  After restore all 72 are still queued; once
 * unblocked each is delivered once, with its value and queue (si_code SI_QUEUE), in the order it
 * was queued within its signal.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NSHARED 67
#define NPRIVATE 5
#define TOTAL (NSHARED + NPRIVATE)

static volatile int got_sig[TOTAL + 8], got_val[TOTAL + 8], got_code[TOTAL + 8];
static volatile int ngot;

static void on_sig(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (ngot < TOTAL + 8) {
		got_sig[ngot] = sig;
		got_val[ngot] = si->si_value.sival_int;
		got_code[ngot] = si->si_code;
	}
	ngot++;
}

/* the value of the i-th signal queued on `sig` */
static int value_of(int sig, int i) { return sig * 1000 + i; }

int main(int argc, char **argv)
{
	struct sigaction sa;
	sigset_t block;
	int sent[4] = {0};

	test_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sig;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&block);
	for (int k = 1; k <= 4; k++) {
		sigaction(SIGRTMIN + k, &sa, NULL);
		sigaddset(&block, SIGRTMIN + k);
	}
	sigprocmask(SIG_BLOCK, &block, NULL);
	for (int i = 0; i < NSHARED; i++) {
		int k = 1 + i % 3, sig = SIGRTMIN + k;
		union sigval v = { .sival_int = value_of(sig, sent[k - 1]++) };
		if (sigqueue(getpid(), sig, v))
			test_abort("sigqueue #%d: %s", i, strerror(errno));
	}
	for (int i = 0; i < NPRIVATE; i++)
		if (queue_to_thread(gettid(), SIGRTMIN + 4, value_of(SIGRTMIN + 4, i)))
			test_abort("rt_tgsigqueueinfo #%d: %s", i, strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, SIGRTMIN + 2);
		sigprocmask(SIG_UNBLOCK, &one, NULL); /* delivered now */
		sigprocmask(SIG_BLOCK, &one, NULL);
		ngot = 0;
	}
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	if (ngot != TOTAL)
		fail("%d signals delivered after unblocking, want %d", ngot, TOTAL);
	int next[5] = {0};
	for (int i = 0; i < ngot && i < TOTAL; i++) {
		int k = got_sig[i] - SIGRTMIN;
		if (k < 1 || k > 4) {
			fail("signal %d delivered, not one of the queued ones", got_sig[i]);
			break;
		}
		if (got_val[i] != value_of(got_sig[i], next[k]) || got_code[i] != SI_QUEUE) {
			fail("delivery %d: SIGRTMIN+%d value %d code %d, want value %d code %d", i, k, got_val[i],
			     got_code[i], value_of(got_sig[i], next[k]), SI_QUEUE);
			break;
		}
		next[k]++;
	}
	return test_finish();
}
