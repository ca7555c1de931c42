/*
 * pty_ctty: a session whose controlling terminal is a pty slave that its leader holds no fd on.
 * The root holds the master (fd 70).  Its child L makes a session, opens the slave with O_NOCTTY,
 * takes it with TIOCSCTTY and closes it again; L's child M makes its own process group, which L
 * brings to the foreground, and holds the slave as fd 0 (the terminal of a session it does not
 * lead).  A line is waiting for M.  After restore: L and M have the slave as their terminal
 * (/proc/self/stat tty_nr), L is its session (tcgetsid), M's group is in the foreground and M
 * reads exactly its line.  Exit codes say which check failed (1x: L, 2x: M).
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/ptyw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MASTER 70

static char slave_path[64];
static dev_t slave_rdev;
static int pid_pipe[2];

static int member_check(pid_t leader)
{
	char buf[64];
	struct pollfd p = { 0, POLLIN, 0 };

	if (zdtm_break)
		tcflush(0, TCIFLUSH);              /* the line waiting for M is gone */
	if ((dev_t)test_tty_nr() != slave_rdev)
		return 20;
	if (tcgetsid(0) != leader)
		return 21;
	if (tcgetpgrp(0) != getpgrp())
		return 22;
	if (poll(&p, 1, 2000) != 1 || read(0, buf, sizeof(buf)) != 6 || memcmp(buf, "to-m!\n", 6))
		return 23;
	return 0;
}

static void member(pid_t leader)
{
	if (setpgid(0, 0))
		_exit(30);
	int s = open(slave_path, O_RDWR);
	if (s < 0 || dup2(s, 0) != 0)
		_exit(31);
	close(s);
	kill(leader, SIGUSR1);
	test_usr1_wait();
	_exit(member_check(leader));
}

static void leader(void)
{
	int status;

	close(MASTER);
	if (setsid() < 0)
		_exit(40);
	int s = open(slave_path, O_RDWR | O_NOCTTY);
	if (s < 0 || ioctl(s, TIOCSCTTY, 0))
		_exit(41);
	close(s);
	pid_t me = getpid(), m = test_fork();
	if (m == 0)
		member(me);
	test_usr1_wait();                      /* M is in its group and holds the slave */
	int t = open("/dev/tty", O_RDWR);
	if (t < 0 || tcsetpgrp(t, m))
		_exit(42);
	close(t);
	if (write(pid_pipe[1], &m, sizeof(m)) != sizeof(m))
		_exit(43);
	close(pid_pipe[0]);
	close(pid_pipe[1]);

	test_usr1_wait();
	int bad = 0;
	if ((dev_t)test_tty_nr() != slave_rdev)
		bad = 10;
	else if (getsid(0) != getpid())
		bad = 11;
	if (kill(m, SIGUSR1) || waitpid(m, &status, 0) != m)
		_exit(bad ? bad : 12);
	_exit(bad ? bad : WIFEXITED(status) ? WEXITSTATUS(status) : 13);
}

int main(int argc, char **argv)
{
	struct stat st;
	pid_t pids[2];

	test_init(argc, argv);
	test_usr1_init();
	pty_open_master(MASTER, slave_path, sizeof(slave_path));
	if (stat(slave_path, &st) || pipe(pid_pipe))
		test_abort("slave: %s", strerror(errno));
	slave_rdev = st.st_rdev;
	pids[0] = test_fork();
	if (pids[0] == 0)
		leader();
	if (read(pid_pipe[0], &pids[1], sizeof(pids[1])) != sizeof(pids[1]))
		test_abort("no pid of the member");
	close(pid_pipe[0]);
	close(pid_pipe[1]);
	if (write(MASTER, "to-m!\n", 6) != 6)
		test_abort("write: %s", strerror(errno));
	test_write_pids(pids, 2);
	test_daemon();

	test_waitsig();
	kill(pids[0], SIGUSR1);
	int code = test_reap(pids[0], "the leader L");
	if (code > 0)
		fail("a check failed: exit %d (10: L lost its terminal, 11: L its session, 20: M its terminal, "
		     "21: M's session, 22: M not in the foreground, 23: M's line)", code);
	return test_finish();
}
