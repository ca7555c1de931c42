/*
 * stopped_tstp: a child stopped by SIGTSTP (in a process group of its own, which its parent's
 * session keeps from being orphaned: else the kernel would drop the signal), its stop not yet
 * collected by the parent.  After restore it is still stopped by SIGTSTP, not SIGSTOP: the
 * parent's waitpid(WUNTRACED) reports WSTOPSIG SIGTSTP, and so does a PTRACE_INTERRUPT of it.
 * SIGCONT then wakes it: its handler runs and ends the pause() it was stopped in (EINTR, as the
 * kernel would; a restored pause() must not sleep on), and it exits 17.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

static volatile sig_atomic_t continued;

static void on_cont(int sig) { (void)sig; continued = 1; }

/* The stop signal a tracer sees: seize, interrupt, read the event-stop, detach (still stopped). */
static int traced_stop_signal(pid_t kid)
{
	int status, sig = -1;

	if (ptrace(PTRACE_SEIZE, kid, 0, 0) || ptrace(PTRACE_INTERRUPT, kid, 0, 0)) {
		fail("ptrace seize/interrupt of %d: %s", kid, strerror(errno));
		return -1;
	}
	if (waitpid(kid, &status, __WALL) == kid && WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP)
		sig = WSTOPSIG(status);
	else
		fail("no event-stop of %d (status 0x%x)", kid, status);
	ptrace(PTRACE_DETACH, kid, 0, 0);
	return sig;
}

int main(int argc, char **argv)
{
	int status;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		signal(SIGCONT, on_cont);
		setpgid(0, 0);
		kill(getppid(), SIGUSR1);      /* set up: it may be stopped now, asleep in pause() */
		while (!continued)
			pause();
		_exit(17);
	}
	test_usr1_wait();
	kill(kid, SIGTSTP);                    /* as ^Z would: while it sleeps */
	wait_proc_state(kid, 'T');          /* watched, not collected: the report stays for later */
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		kill(kid, SIGCONT);
	char st = expect_proc_state(kid, 'T');
	pid_t got = waitpid(kid, &status, WNOHANG | WUNTRACED);
	if (got != kid || !WIFSTOPPED(status) || WSTOPSIG(status) != SIGTSTP)
		fail("waitpid(WUNTRACED) = %d status 0x%x, want stopped by SIGTSTP (%d)", got, got == kid ? status : 0,
		     SIGTSTP);
	if (st == 'T') {
		int sig = traced_stop_signal(kid);
		if (sig != SIGTSTP)
			fail("a tracer sees the child stopped by signal %d, want SIGTSTP (%d)", sig, SIGTSTP);
	}
	kill(kid, SIGCONT);
	int code = test_reap(kid, "the child");
	if (code >= 0 && code != 17)
		fail("the child did not exit 17 after SIGCONT (exit %d)", code);
	return test_finish();
}
