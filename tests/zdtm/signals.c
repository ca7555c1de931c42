/*
 * signals: installed handlers, ignored signals, blocked signals, and signals delivered after the
 * restore.  The kernel's view of every sigaction (handler, flags, restorer, mask; read with the
 * raw rt_sigaction syscall for signals 1..64) and of the blocked mask is kept when the test is
 * ready and compared after SIGTERM; the test waits in sigsuspend with an empty temporary mask,
 * so a dumper that saves the temporary mask instead of the real one is caught.  Then it queues
 * SIGUSR1 with a value (handler must see it), raises a blocked SIGUSR2 (must stay pending until
 * unblocked), queues two real-time signals (both must arrive) and raises an ignored SIGPIPE.
 */
#include "lib/zdtmtst.h"

#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct k_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static struct k_sigaction acts_before[65];
static sigset_t blocked_before;
static volatile sig_atomic_t usr1_count, usr1_value, usr1_code, usr2_count, rt_count;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	usr1_count++;
	usr1_value = si->si_value.sival_int;
	usr1_code = si->si_code;
}

static void on_usr2(int sig) { (void)sig; usr2_count++; }
static void on_rt(int sig, siginfo_t *si, void *uc) { (void)sig, (void)si, (void)uc; rt_count++; }

static void install(int sig, void *handler, int flags, int mask_sig1, int mask_sig2)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (mask_sig1)
		sigaddset(&sa.sa_mask, mask_sig1);
	if (mask_sig2)
		sigaddset(&sa.sa_mask, mask_sig2);
	if (sigaction(sig, &sa, NULL))
		test_abort("sigaction(%d) failed", sig);
}

static int read_action(int sig, struct k_sigaction *ka)
{
	return (int)syscall(SYS_rt_sigaction, sig, NULL, ka, 8);
}

static void check_actions(void)
{
	for (int sig = 1; sig <= 64; sig++) {
		struct k_sigaction now;
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (read_action(sig, &now)) {
			fail("rt_sigaction(%d) failed", sig);
			continue;
		}
		if (memcmp(&now, &acts_before[sig], sizeof(now)))
			fail("sigaction of %d: handler %p flags %#lx restorer %p mask %#llx; was %p %#lx %p %#llx",
			     sig, now.handler, now.flags, now.restorer, (unsigned long long)now.mask,
			     acts_before[sig].handler, acts_before[sig].flags, acts_before[sig].restorer,
			     (unsigned long long)acts_before[sig].mask);
	}
}

static void check_delivery(void)
{
	union sigval v = {.sival_int = 4242};
	sigset_t pend, usr2;

	if (sigqueue(getpid(), SIGUSR1, v) || usr1_count != 1 || usr1_value != 4242 || usr1_code != SI_QUEUE)
		fail("SIGUSR1 after restore: %d deliveries, value %d, code %d", (int)usr1_count,
		     (int)usr1_value, (int)usr1_code);
	raise(SIGUSR2);
	sigpending(&pend);
	if (usr2_count || !sigismember(&pend, SIGUSR2))
		fail("blocked SIGUSR2 was delivered (%d) or is not pending", (int)usr2_count);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_UNBLOCK, &usr2, NULL);
	if (usr2_count != 1)
		fail("SIGUSR2 not delivered once unblocked (%d)", (int)usr2_count);
	sigqueue(getpid(), SIGRTMIN + 2, v);
	sigqueue(getpid(), SIGRTMIN + 2, v);
	if (rt_count != 2)
		fail("two queued SIGRTMIN+2 gave %d deliveries", (int)rt_count);
	raise(SIGPIPE); /* ignored: must not kill us */
}

int main(int argc, char **argv)
{
	sigset_t block, now;

	test_init(argc, argv);
	install(SIGUSR1, on_usr1, SA_SIGINFO | SA_RESTART, SIGINT, SIGQUIT);
	install(SIGUSR2, on_usr2, SA_NODEFER, 0, 0);
	install(SIGRTMIN + 2, on_rt, SA_SIGINFO | SA_ONSTACK, SIGRTMIN + 7, 0);
	install(SIGALRM, on_usr2, SA_RESETHAND, SIGHUP, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_IGN);
	signal(SIGHUP, SIG_DFL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGWINCH);
	sigaddset(&block, SIGRTMIN + 5);
	sigprocmask(SIG_BLOCK, &block, NULL);
	sigprocmask(SIG_SETMASK, NULL, &blocked_before);
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP && read_action(sig, &acts_before[sig]))
			test_abort("rt_sigaction(%d) failed", sig);
	test_daemon();

	/* Wait with an empty temporary mask: the real mask must come back afterwards. */
	sigemptyset(&now);
	while (!zdtm_stop)
		sigsuspend(&now);
	if (zdtm_break)
		install(SIGUSR1, on_usr1, SA_SIGINFO, SIGINT, SIGQUIT);

	sigprocmask(SIG_SETMASK, NULL, &now);
	for (int sig = 1; sig <= 64; sig++)
		if (sigismember(&now, sig) != sigismember(&blocked_before, sig))
			fail("signal %d is %s blocked than before", sig, sigismember(&now, sig) ? "now" : "no longer");
	check_actions();
	check_delivery();
	return test_finish();
}
