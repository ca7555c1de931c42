/*
 * epoll_outside: an epoll set holds a pipe's read end that only a process outside the dumped
 * tree holds now (a grandchild whose parent exited, so it is no longer the test's descendant):
 * crpy cannot give the set that file back, so the dump must fail in one line naming the
 * registration and leave the task untouched (tests/zdtm/desc.py: dump_fails).  Then the
 * registration still reports the pipe.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x7777 };
	int ep, p[2], pids[2], status;
	pid_t mid;

	test_init(argc, argv);
	ep = epoll_create1(0);
	if (ep < 0 || pipe(p) || pipe(pids) || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		test_abort("setup: %s", strerror(errno));
	mid = test_fork();
	if (mid == 0) {
		pid_t holder = test_fork();
		if (holder == 0) {             /* outside the tree once mid is gone: holds p[0] */
			close(ep);
			for (;;)
				pause();
		}
		write(pids[1], &holder, sizeof(holder));
		_exit(0);
	}
	pid_t holder = 0;
	if (waitpid(mid, &status, 0) != mid || status || read(pids[0], &holder, sizeof(holder)) != sizeof(holder))
		test_abort("the holder: %s", strerror(errno));
	close(p[0]);
	test_daemon();

	test_waitsig();
	if (!zdtm_break)                   /* break: nothing written, nothing to report */
		write(p[1], "x", 1);
	if (epoll_wait(ep, &ev, 1, 0) != 1 || ev.data.u64 != 0x7777)
		fail("the registration of the pipe end held outside is gone");
	kill(holder, SIGKILL);
	return test_finish();
}
