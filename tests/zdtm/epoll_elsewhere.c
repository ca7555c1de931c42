/*
 * epoll_elsewhere: an epoll set holds a pipe's read end that only a child holds now (the parent
 * forked, then closed its own fd on it; the child closed its copy of the set).  After restore the
 * set still registers that end under its old fd number with its data, a write to the pipe wakes
 * the set, and the child reads the byte from its end: one pipe, one registered file.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x7777 };
	char path[64], info[1024], want[64];
	int ep, p[2];
	pid_t kid;

	test_init(argc, argv);
	ep = epoll_create1(0);
	if (ep < 0 || pipe(p) || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		test_abort("setup: %s", strerror(errno));
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		char c = 0;
		close(ep);
		close(p[1]);
		fcntl(p[0], F_SETFL, O_NONBLOCK);   /* a break writes nothing: no hang */
		test_usr1_wait();
		_exit(read(p[0], &c, 1) == 1 && c == 'x' ? 0 : 1);
	}
	close(p[0]);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	snprintf(want, sizeof(want), "tfd: %8d events:       19 data:             7777", p[0]);
	if (read_whole(path, info, sizeof(info)) < 0 || !strstr(info, want))
		fail("the registration is not listed as before: %s", info);
	if (!zdtm_break)                   /* break: nothing written, nothing to report */
		write(p[1], "x", 1);
	if (epoll_wait(ep, &ev, 1, 0) != 1 || ev.data.u64 != 0x7777)
		fail("the registration of the child's pipe end does not report");
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "the child");
	if (code > 0)
		fail("the child did not read the byte from its end (exit %d)", code);
	return test_finish();
}
