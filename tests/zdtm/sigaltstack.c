/*
 * sigaltstack: an alternate signal stack and a handler installed with SA_ONSTACK.  Before the
 * dump the handler runs on the alternate stack; after SIGTERM sigaltstack() must report the same
 * stack, and a fresh SIGUSR1 must again run on it.
 */
#include "lib/zdtmtst.h"

#include <string.h>

#define ALT_SIZE (64 * 1024)
static char altstack[ALT_SIZE] __attribute__((aligned(16)));
static volatile uintptr_t handler_sp;
static stack_t before;

static void on_usr1(int sig)
{
	volatile char here;
	(void)sig;
	handler_sp = (uintptr_t)&here;
}

static int ran_on_altstack(void)
{
	handler_sp = 0;
	raise(SIGUSR1);
	return handler_sp >= (uintptr_t)altstack && handler_sp < (uintptr_t)altstack + ALT_SIZE;
}

int main(int argc, char **argv)
{
	stack_t ss = {.ss_sp = altstack, .ss_size = ALT_SIZE, .ss_flags = 0}, now;
	struct sigaction sa;

	test_init(argc, argv);
	if (sigaltstack(&ss, NULL))
		test_abort("sigaltstack failed");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	if (!ran_on_altstack())
		test_abort("the SA_ONSTACK handler did not run on the alternate stack");
	sigaltstack(NULL, &before);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		stack_t off = {.ss_flags = SS_DISABLE};
		sigaltstack(&off, NULL);
	}
	sigaltstack(NULL, &now);
	if (now.ss_sp != before.ss_sp || now.ss_size != before.ss_size || now.ss_flags != before.ss_flags)
		fail("sigaltstack is %p/%zu/%#x, was %p/%zu/%#x", now.ss_sp, now.ss_size, now.ss_flags,
		     before.ss_sp, before.ss_size, before.ss_flags);
	if (!ran_on_altstack())
		fail("SIGUSR1 handler ran at %#lx, not on the alternate stack", (unsigned long)handler_sp);
	return test_finish();
}
