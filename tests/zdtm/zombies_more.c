/*
 * zombies_more: unreaped children of other shapes than in `zombies`: one killed by SIGKILL, one
 * killed by SIGSEGV with a core dump (wait status with the core flag), one that made a session of
 * its own before exiting 3, and one that led a process group and exited 5 while a live sibling
 * stays in that group.  After restore each zombie is still a zombie with its status, and the live
 * sibling is still in the dead leader's group.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define NZ 4

static void core_dump_here(void)
{
	/* the core file goes next to the outfile (core_pattern "core": the cwd) */
	char dir[4096];
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	snprintf(dir, sizeof(dir), "%s", zdtm_outfile);
	*strrchr(dir, '/') = 0;
	if (chdir(dir) || setrlimit(RLIMIT_CORE, &rl))
		_exit(99);
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
	_exit(98);
}

int main(int argc, char **argv)
{
	pid_t z[NZ], member, all[NZ + 1];
	int want[NZ], pipefd[2];
	char c;

	test_init(argc, argv);
	if (pipe(pipefd))
		test_abort("pipe: %s", strerror(errno));
	for (int i = 0; i < NZ; i++) {
		z[i] = test_fork();
		if (z[i] == 0) {
			switch (i) {
			case 0:
				for (;;)
					pause();
			case 1:
				core_dump_here();
				break;
			case 2:
				setsid();
				_exit(3);
			case 3:
				setpgid(0, 0);
				/* exit once the member has joined the group */
				read(pipefd[0], &c, 1);
				_exit(5);
			}
		}
	}
	while (getpgid(z[3]) != z[3])
		usleep(1000);
	member = test_fork();
	if (member == 0) {
		if (setpgid(0, z[3]))
			_exit(1);
		write(pipefd[1], "j", 1);
		for (;;)
			pause();
	}
	kill(z[0], SIGKILL);
	want[0] = SIGKILL;
	want[1] = 0x80 | SIGSEGV;
	want[2] = 3 << 8;
	want[3] = 5 << 8;
	for (int i = 0; i < NZ; i++)
		wait_proc_state(z[i], 'Z');
	for (int i = 0; i < NZ; i++) {
		siginfo_t si;
		int status = -1;
		memset(&si, 0, sizeof(si));
		waitid(P_PID, z[i], &si, WEXITED | WNOWAIT);
		if (si.si_code == CLD_EXITED)
			status = si.si_status << 8;
		else
			status = si.si_status | (si.si_code == CLD_DUMPED ? 0x80 : 0);
		if (status != want[i])
			test_abort("child %d: status 0x%x before the dump, want 0x%x", i, status, want[i]);
	}
	memcpy(all, z, sizeof(z));
	all[NZ] = member;
	test_write_pids(all, NZ + 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		waitpid(z[2], NULL, 0);
	if (getpgid(member) != z[3])
		fail("the live member %d is in group %d, not in its dead leader's %d", member, getpgid(member), z[3]);
	for (int i = 0; i < NZ; i++) {
		int status = -1;
		expect_proc_state(z[i], 'Z');
		pid_t got = waitpid(z[i], &status, WNOHANG);
		if (got != z[i])
			fail("waitpid(%d) = %d (%s)", z[i], got, got < 0 ? strerror(errno) : "not ready");
		else if (status != want[i])
			fail("child %d: status 0x%x, want 0x%x", z[i], status, want[i]);
	}
	kill(member, SIGKILL);
	waitpid(member, NULL, 0);
	return test_finish();
}
