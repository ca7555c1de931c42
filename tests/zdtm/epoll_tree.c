/*
 * epoll_tree: one epoll set shared by parent and child (inherited across fork) holding the
 * parent's eventfd A registered as fd 10 (data 0xA); the child has since put another eventfd at
 * its fd 10.  After restore the set still holds exactly that one registration: a write to A
 * wakes it with 0xA, a write to the child's fd 10 does not, and both tasks see one registration.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define TFD 10

static int registrations(int ep)
{
	char path[64], info[4096];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	if (read_whole(path, info, sizeof(info)) < 0)
		return -1;
	for (char *p = info; (p = strstr(p, "tfd:")); p++)
		n++;
	return n;
}

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xA };
	uint64_t one = 1;
	int ep;
	pid_t kid;

	test_init(argc, argv);
	ep = epoll_create1(0);
	if (ep < 0 || dup2(eventfd(0, EFD_NONBLOCK), TFD) != TFD || epoll_ctl(ep, EPOLL_CTL_ADD, TFD, &ev))
		test_abort("setup: %s", strerror(errno));
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		if (dup2(eventfd(0, EFD_NONBLOCK), TFD) != TFD)
			_exit(3);
		test_usr1_wait();
		if (registrations(ep) != 1)
			_exit(1);
		write(TFD, &one, sizeof(one));
		_exit(epoll_wait(ep, &ev, 1, 0) == 0 ? 0 : 2);
	}
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		struct epoll_event more = { .events = EPOLLIN, .data.u64 = 0xB };
		epoll_ctl(ep, EPOLL_CTL_ADD, eventfd(0, 0), &more);
	}
	if (registrations(ep) != 1)
		fail("the shared set holds %d registrations, not 1", registrations(ep));
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child: %s (exit %d)", code == 1 ? "not one registration" : "its own fd 10 wakes the set", code);
	write(TFD, &one, sizeof(one));
	if (epoll_wait(ep, &ev, 1, 0) != 1 || ev.data.u64 != 0xA)
		fail("eventfd A does not wake the set with 0xA");
	return test_finish();
}
