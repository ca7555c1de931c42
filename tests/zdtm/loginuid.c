/*
 * loginuid: audit login uids.  The test sets its own to 4242 and its child sets 777 (root with
 * CAP_AUDIT_CONTROL may change it).  After restore /proc/PID/loginuid of each says the same.
 * On a kernel without audit (no /proc/self/loginuid) it says so by name and checks nothing else.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int set_loginuid(unsigned uid)
{
	char buf[32];
	int fd = open("/proc/self/loginuid", O_WRONLY), n = snprintf(buf, sizeof(buf), "%u", uid);
	int ok = fd >= 0 && write(fd, buf, n) == n;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static long loginuid_of(pid_t pid)
{
	char path[64], buf[32];

	snprintf(path, sizeof(path), "/proc/%d/loginuid", pid);
	return read_whole(path, buf, sizeof(buf)) > 0 ? strtol(buf, NULL, 10) : -1;
}

int main(int argc, char **argv)
{
	pid_t kid;

	test_init(argc, argv);
	if (access("/proc/self/loginuid", F_OK)) {
		test_msg("loginuid: this kernel has no audit (no /proc/self/loginuid), not checked");
		test_daemon();
		test_waitsig();
		return test_finish();
	}
	if (set_loginuid(4242))
		test_abort("writing /proc/self/loginuid: %s", strerror(errno));
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		if (set_loginuid(777))
			_exit(1);
		kill(getppid(), SIGUSR1);
		for (;;)
			pause();
	}
	test_usr1_wait();
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		set_loginuid(1);
	if (loginuid_of(getpid()) != 4242)
		fail("the test's loginuid is %ld, want 4242", loginuid_of(getpid()));
	if (loginuid_of(kid) != 777)
		fail("the child's loginuid is %ld, want 777", loginuid_of(kid));
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	return test_finish();
}
