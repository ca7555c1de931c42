/*
 * taskstate: what a daemon sets about itself.  It leads its own session and process group
 * (setsid), has umask 027, a working directory of its own, lowered soft rlimits, a timer slack,
 * a task name, and no_new_privs.  After SIGTERM all must be as they were.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME "zdtm-taskstate"
static struct rlimit limits[RLIM_NLIMITS];
static char cwd_before[4096], cwd_now[4096], comm[64];
static long slack;

int main(int argc, char **argv)
{
	struct rlimit rl;
	char *dir;

	test_init(argc, argv);
	umask(027);
	dir = test_path(".cwd dir");
	if (mkdir(dir, 0755) && errno != EEXIST)
		test_abort("mkdir %s", dir);
	if (chdir(dir) || !getcwd(cwd_before, sizeof(cwd_before)))
		test_abort("chdir %s", dir);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = 1000;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_CORE, &rl);
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 12345 * 4096 ? 12345 * 4096 : rl.rlim_max;
	setrlimit(RLIMIT_CORE, &rl);
	getrlimit(RLIMIT_STACK, &rl);
	rl.rlim_cur = 4UL << 20;
	setrlimit(RLIMIT_STACK, &rl);
	for (int r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &limits[r]);
	prctl(PR_SET_TIMERSLACK, 123456UL, 0, 0, 0);
	slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	prctl(PR_SET_NAME, NAME, 0, 0, 0);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		test_abort("PR_SET_NO_NEW_PRIVS failed");
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		umask(022);

	if (getsid(0) != getpid() || getpgid(0) != getpid())
		fail("sid %d, pgid %d, but pid %d: no longer its own session leader", getsid(0), getpgid(0), getpid());
	if (umask(027) != 027)
		fail("umask changed");
	if (!getcwd(cwd_now, sizeof(cwd_now)) || strcmp(cwd_now, cwd_before))
		fail("cwd is %s, was %s", cwd_now, cwd_before);
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		getrlimit(r, &rl);
		if (rl.rlim_cur != limits[r].rlim_cur || rl.rlim_max != limits[r].rlim_max)
			fail("rlimit %d is %llu/%llu, was %llu/%llu", r, (unsigned long long)rl.rlim_cur,
			     (unsigned long long)rl.rlim_max, (unsigned long long)limits[r].rlim_cur,
			     (unsigned long long)limits[r].rlim_max);
	}
	if (prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) != slack)
		fail("timer slack %ld, was %ld", (long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), slack);
	if (read_whole("/proc/self/comm", comm, sizeof(comm)) <= 0 || strcmp(comm, NAME "\n"))
		fail("comm is \"%.*s\", want %s", (int)strcspn(comm, "\n"), comm, NAME);
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		fail("no_new_privs was lost");
	return test_finish();
}
