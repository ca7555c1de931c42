/*
 * tree50: a three-level tree of 50 processes (root, 7 children, 6 grandchildren each) with process
 * groups and two sessions: child 0 starts a second session (its children stay in it), child 1 leads
 * a group its children join, the children of child 2 each lead a group of their own, the children
 * of child 3 join the group of their first sibling.  Every process records its pid, ppid, pgid and
 * sid once set up.  After SIGTERM the root sends SIGUSR1 down the tree: each process checks its
 * own four ids and exits with the number of bad processes in its subtree; the root adds them up.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCHILD 7
#define NGRAND 6

static pid_t kids[NGRAND > NCHILD ? NGRAND : NCHILD];
static int nkids;
static pid_t want_pid, want_ppid, want_pgid, want_sid;

static void record(void)
{
	want_pid = getpid();
	want_ppid = getppid();
	want_pgid = getpgrp();
	want_sid = getsid(0);
}

static int ids_bad(const char *who)
{
	pid_t now[4] = { getpid(), getppid(), getpgrp(), getsid(0) };
	pid_t was[4] = { want_pid, want_ppid, want_pgid, want_sid };
	static const char *names[4] = { "pid", "ppid", "pgid", "sid" };
	for (int i = 0; i < 4; i++)
		if (now[i] != was[i] && was[i] != -1) {
			test_msg("%s %d: %s is %d, was %d", who, want_pid, names[i], now[i], was[i]);
			return 1;
		}
	return 0;
}

/* Tell the children to check, then collect their counts of bad processes. */
static int collect(void)
{
	int bad = 0, status;
	for (int i = 0; i < nkids; i++)
		kill(kids[i], SIGUSR1);
	for (int i = 0; i < nkids; i++) {
		if (waitpid(kids[i], &status, 0) != kids[i]) {
			test_msg("waitpid %d: %s", kids[i], strerror(errno));
			bad += NGRAND + 1;
		} else if (!WIFEXITED(status)) {
			test_msg("child %d ended with status 0x%x", kids[i], status);
			bad += NGRAND + 1;
		} else {
			bad += WEXITSTATUS(status);
		}
	}
	return bad;
}

static void report_pid(int wfd)
{
	pid_t me = getpid();
	if (write(wfd, &me, sizeof(me)) != sizeof(me))
		_exit(100);
}

/* Level 2: a grandchild; j is its index among its siblings, first its first sibling's pid. */
static void grandchild(int parent_idx, int j, pid_t first, int wfd)
{
	if (parent_idx == 2)
		setpgid(0, 0);
	if (parent_idx == 3 && j == 0)
		setpgid(0, 0);
	if (parent_idx == 3 && j > 0 && setpgid(0, first))
		_exit(101);
	record();
	report_pid(wfd);
	close(wfd);
	test_usr1_wait();
	if (zdtm_break && parent_idx == 3 && j == NGRAND - 1)
		setpgid(0, 0);
	_exit(ids_bad("grandchild"));
}

static void child(int idx, int wfd)
{
	int sync[2];
	if (idx == 0)
		setsid();
	if (idx == 1)
		setpgid(0, 0);
	for (int j = 0; j < NGRAND; j++) {
		/* The first sibling must be a group leader before the others join it. */
		if (pipe(sync))
			_exit(102);
		pid_t pid = test_fork();
		if (pid == 0) {
			close(sync[0]);
			close(sync[1]);
			grandchild(idx, j, kids[0], wfd);
		}
		close(sync[1]);
		close(sync[0]);
		kids[nkids++] = pid;
		if (idx == 3 && j == 0)
			while (getpgid(pid) != pid)
				usleep(1000);
	}
	record();
	report_pid(wfd);
	close(wfd);
	test_usr1_wait();
	int bad = collect();
	_exit(bad + ids_bad("child"));
}

int main(int argc, char **argv)
{
	pid_t all[NCHILD * (NGRAND + 1)];
	int p[2], got = 0;

	test_init(argc, argv);
	test_usr1_init();
	if (pipe(p))
		test_abort("pipe: %s", strerror(errno));
	for (int i = 0; i < NCHILD; i++) {
		pid_t pid = test_fork();
		if (pid == 0) {
			close(p[0]);
			nkids = 0;
			child(i, p[1]);
		}
		kids[nkids++] = pid;
	}
	close(p[1]);
	while (got < NCHILD * (NGRAND + 1)) {
		ssize_t n = read(p[0], &all[got], sizeof(pid_t));
		if (n != sizeof(pid_t))
			test_abort("only %d of %d processes reported", got, NCHILD * (NGRAND + 1));
		got++;
	}
	close(p[0]);
	FILE *f = fopen(test_path(".pids"), "w");
	if (!f)
		test_abort("cannot write the pid list");
	for (int i = 0; i < got; i++)
		fprintf(f, "%d\n", all[i]);
	fclose(f);
	record();
	want_ppid = -1;   /* the root's parent exits once it is ready: it is reparented, not checked */
	test_msg("tree of %d processes", got + 1);
	test_daemon();

	test_waitsig();
	int bad = collect() + ids_bad("root");
	if (bad)
		fail("%d of %d processes have a wrong pid, ppid, pgid or sid", bad, got + 1);
	return test_finish();
}
