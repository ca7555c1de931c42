/*
 * stopped: a child stopped by SIGSTOP before the dump.  After restore it is still stopped
 * (state T, its parent's waitpid sees no progress); SIGCONT wakes it (its SIGCONT handler runs),
 * the parent sees WIFCONTINUED, and the child exits 17.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t continued;

static void on_cont(int sig) { (void)sig; continued = 1; }

int main(int argc, char **argv)
{
	int status;
	pid_t kid;

	test_init(argc, argv);
	kid = test_fork();
	if (kid == 0) {
		signal(SIGCONT, on_cont);
		raise(SIGSTOP);   /* itself, once the protocol pipe is closed */
		while (!continued)
			pause();
		_exit(17);
	}
	if (waitpid(kid, &status, WUNTRACED) != kid || !WIFSTOPPED(status))
		test_abort("the child did not stop (status 0x%x)", status);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		kill(kid, SIGCONT);
	expect_proc_state(kid, 'T');
	if (waitpid(kid, &status, WNOHANG | WCONTINUED) != 0)
		fail("the child changed state before SIGCONT (status 0x%x)", status);
	kill(kid, SIGCONT);
	/* The exit may overtake the "continued" report: either is fine, the exit code shows the
	 * handler ran after the stop. */
	if (waitpid(kid, &status, WCONTINUED) != kid || !(WIFCONTINUED(status) || WIFEXITED(status)))
		fail("no WIFCONTINUED after SIGCONT (status 0x%x)", status);
	if (WIFCONTINUED(status) && waitpid(kid, &status, 0) != kid)
		fail("waitpid after WIFCONTINUED: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 17)
		fail("the child did not exit 17 after SIGCONT (status 0x%x)", status);
	return test_finish();
}
