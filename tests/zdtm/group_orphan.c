/*
 * group_orphan: a process group whose leader is gone, as after a pipeline whose first command
 * exited.  The test forks A (a group of its own) and B and C, which join A's group; A is killed
 * and reaped.  After restore B and C are still in group A, A's pid runs nothing, and a signal
 * sent to the group reaches both (each exits 0 on it; one it does not reach is killed after 2 s).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t group;

static void member(void)
{
	test_usr1_wait();                       /* the SIGUSR1 sent to the whole group */
	_exit(getpgid(0) == group ? 0 : 1);
}

int main(int argc, char **argv)
{
	pid_t kids[2];
	int status;

	test_init(argc, argv);
	test_usr1_init();
	group = test_fork();                    /* A: the group's leader, until it is killed below */
	if (group == 0) {
		setpgid(0, 0);
		pause();
		_exit(0);
	}
	setpgid(group, group);
	for (int i = 0; i < 2; i++) {
		kids[i] = test_fork();
		if (kids[i] == 0) {
			setpgid(0, group);
			member();
		}
		setpgid(kids[i], group);
	}
	kill(group, SIGKILL);                   /* the leader goes; its group stays with B and C */
	if (waitpid(group, &status, 0) != group)
		test_abort("waitpid leader: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
		if (getpgid(kids[i]) != group)
			test_abort("pid %d is not in group %d", kids[i], group);
	test_write_pids(kids, 2);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		setpgid(kids[1], kids[1]);
	if (kill(group, 0) == 0 || errno != ESRCH)
		fail("pid %d (the dead leader) runs again", group);
	for (int i = 0; i < 2; i++)
		if (getpgid(kids[i]) != group)
			fail("pid %d is in group %d, not %d", kids[i], getpgid(kids[i]), group);
	if (killpg(group, SIGUSR1))
		fail("killpg(%d): %s", group, strerror(errno));
	for (int i = 0; i < 2; i++) {
		pid_t got = 0;

		for (int ms = 0; ms < 2000 && got == 0; ms += 10) {
			got = waitpid(kids[i], &status, WNOHANG);
			if (got == 0)
				usleep(10000);
		}
		if (got == 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], &status, 0);
			fail("member %d did not get the SIGUSR1 sent to group %d", kids[i], group);
		} else if (got != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fail("member %d: wait status 0x%x", kids[i], status);
		}
	}
	return test_finish();
}
