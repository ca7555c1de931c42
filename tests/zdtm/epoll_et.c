/*
 * epoll_et: an epoll set with two edge-triggered registrations (EPOLLIN|EPOLLET): eventfd A,
 * readable, whose edge epoll_wait has reported already, and eventfd B, made readable after the
 * last epoll_wait, whose edge is not reported yet.  After restore the set must report B once and
 * not A (nothing new happened to it); a later write to A is reported once.
 * A known gap of crpy (tests/zdtm/known_gaps.py): restore adds the registrations again and the
 * kernel queues every one whose file is ready, so A's old edge is reported once more.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define DATA_A 0xaaaa
#define DATA_B 0xbbbb

/* The events the set reports now: a bit per eventfd (1: A, 2: B), -1 for anything else. */
static int reported(int ep)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ep, ev, 4, 0), got = 0;
	for (int i = 0; i < n; i++)
		got |= ev[i].data.u64 == DATA_A ? 1 : ev[i].data.u64 == DATA_B ? 2 : -1;
	return n < 0 ? -1 : got;
}

int main(int argc, char **argv)
{
	uint64_t one = 1;
	int ep, a, b, got;

	test_init(argc, argv);
	ep = epoll_create1(0);
	a = eventfd(1, EFD_NONBLOCK);
	b = eventfd(0, EFD_NONBLOCK);
	struct epoll_event ea = { .events = EPOLLIN | EPOLLET, .data.u64 = DATA_A };
	struct epoll_event eb = { .events = EPOLLIN | EPOLLET, .data.u64 = DATA_B };
	if (ep < 0 || a < 0 || b < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, a, &ea) || epoll_ctl(ep, EPOLL_CTL_ADD, b, &eb))
		test_abort("setup: %s", strerror(errno));
	if (reported(ep) != 1 || reported(ep) != 0)
		test_abort("A's edge was not reported exactly once");
	if (write(b, &one, sizeof(one)) != sizeof(one))
		test_abort("write B: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		write(a, &one, sizeof(one));
	if ((got = reported(ep)) != 2)
		fail("after restore the set reports %s%s%s, want B's pending edge only",
		     got < 0 ? "an error or unknown data" : got & 1 ? "A's old edge again " : "",
		     got > 0 && got & 2 ? "B " : "", got == 0 ? "nothing" : "");
	if ((got = reported(ep)) != 0)
		fail("a second epoll_wait reports %d", got);
	if (write(a, &one, sizeof(one)) != sizeof(one) || reported(ep) != 1 || reported(ep) != 0)
		fail("a new write to A is not reported exactly once");
	return test_finish();
}
