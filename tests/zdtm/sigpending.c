/*
 * sigpending: signals that are pending (blocked) at dump time.  SIGUSR1 is sent to the process
 * (shared queue), SIGUSR2 to the thread (private queue, tgkill), and SIGRTMIN+1 is queued three
 * times with different values.  After SIGTERM all must still be pending; once unblocked, each
 * must be delivered: the standard ones once, the real-time one three times, values in order.
 */
#include "lib/zdtmtst.h"

#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2, rt;
static volatile int rt_values[8];

static void on_sig(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGUSR1)
		usr1++;
	else if (sig == SIGUSR2)
		usr2++;
	else if (rt < 8)
		rt_values[rt++] = si->si_value.sival_int;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	sigset_t block, pend;
	union sigval v;

	test_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sig;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	kill(getpid(), SIGUSR1);
	syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2);
	for (int i = 0; i < 3; i++) {
		v.sival_int = 100 + i;
		sigqueue(getpid(), SIGRTMIN + 1, v);
	}
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, SIGUSR2);
		sigprocmask(SIG_UNBLOCK, &one, NULL); /* delivered now: no longer pending */
		sigprocmask(SIG_BLOCK, &one, NULL);
		usr2 = 0;
	}
	sigpending(&pend);
	for (int s = 0; s < 3; s++) {
		int sig = s == 0 ? SIGUSR1 : s == 1 ? SIGUSR2 : SIGRTMIN + 1;
		if (!sigismember(&pend, sig))
			fail("signal %d is no longer pending", sig);
	}
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	if (usr1 != 1 || usr2 != 1)
		fail("after unblocking: SIGUSR1 delivered %d times, SIGUSR2 %d times, want 1 and 1", usr1, usr2);
	if (rt != 3)
		fail("SIGRTMIN+1 delivered %d times, want 3", rt);
	for (int i = 0; i < rt && i < 3; i++)
		if (rt_values[i] != 100 + i)
			fail("SIGRTMIN+1 #%d carried %d, want %d", i, rt_values[i], 100 + i);
	return test_finish();
}
