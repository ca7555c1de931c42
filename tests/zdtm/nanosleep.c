/*
 * nanosleep: a task asleep in nanosleep(3600 s) at dump time.  The sleep must end only by the
 * SIGTERM, with EINTR and a sane remaining time.  A restore that makes the sleep return EINTR
 * without any signal is reported in the outfile (that is criu's policy for restart-block
 * syscalls); the test then sleeps on with the remaining time, as a careful program would.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ZDTM_BREAK: make the interrupted syscall "return 0", which the check must catch. */
static void break_return_value(siginfo_t *info, ucontext_t *uc)
{
	(void)info;
	uc->uc_mcontext.gregs[REG_RAX] = 0;
}

int main(int argc, char **argv)
{
	struct timespec req = {3600, 0}, rem;
	int spurious = 0, r, err;
	double start;

	test_init(argc, argv);
	if (zdtm_break)
		zdtm_sigterm_hook = break_return_value;
	test_daemon();
	start = mono();

	for (;;) {
		memset(&rem, 0xff, sizeof(rem));
		r = nanosleep(&req, &rem);
		err = errno;
		if (r == 0) {
			fail("nanosleep of 3600 s returned 0 after %.1f s", mono() - start);
			break;
		}
		if (err != EINTR) {
			fail("nanosleep failed: %s", strerror(err));
			break;
		}
		if (rem.tv_sec < 0 || rem.tv_sec > 3600 || rem.tv_nsec < 0 || rem.tv_nsec >= 1000000000L) {
			fail("nanosleep gave a bogus remaining time %ld.%09ld", (long)rem.tv_sec, rem.tv_nsec);
			break;
		}
		if (zdtm_stop)
			break;
		spurious++;
		req = rem;
	}
	if (spurious)
		test_msg("nanosleep returned EINTR without a signal %d time(s)", spurious);
	if (!zdtm_stop)
		fail("left the sleep without SIGTERM");
	return test_finish();
}
