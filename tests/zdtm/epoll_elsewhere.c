/*
 * epoll_elsewhere: an epoll set holds a pipe's read end that only a child holds now (the parent
 * forked, then closed its own fd on it): crpy cannot give the parent's set that file back, so the
 * dump must fail in one line naming the registration and leave both tasks untouched
 * (tests/zdtm/desc.py: dump_fails).  Then: the registration still reports the child's pipe.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x7777 };
	int ep, p[2], status;
	pid_t kid;

	test_init(argc, argv);
	ep = epoll_create1(0);
	if (ep < 0 || pipe(p) || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		test_abort("setup: %s", strerror(errno));
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		close(ep);
		test_usr1_wait();
		_exit(0);                          /* holds p[0] until then */
	}
	close(p[0]);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (!zdtm_break)                   /* break: nothing written, nothing to report */
		write(p[1], "x", 1);
	if (epoll_wait(ep, &ev, 1, 0) != 1 || ev.data.u64 != 0x7777)
		fail("the registration of the child's pipe end is gone");
	kill(kid, SIGUSR1);
	if (waitpid(kid, &status, 0) != kid || status)
		fail("child status 0x%x", status);
	return test_finish();
}
