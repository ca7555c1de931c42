/*
 * epoll: an epoll set holding an eventfd (EPOLLIN, count 1), a pipe's read end (EPOLLIN|EPOLLET),
 * an eventfd registered as fd X and since moved to another fd (X closed: the registration stays,
 * keyed by the old number), a one-shot registration that has fired already, and a second epoll
 * set (nested) that holds an eventfd of its own.  After restore: the registrations fdinfo lists
 * (fd number, events, data) are the same, and each works: the counted eventfd is ready, a write to
 * the pipe, to the moved eventfd and to the nested set's eventfd each wake the outer set with the
 * right data, the fired one-shot stays silent.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int outer, inner, counted, pipefd[2], moved, oneshot, innerev;
static char before[4096];

static void add(int ep, int fd, unsigned events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		test_abort("epoll_ctl ADD %d: %s", fd, strerror(errno));
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The "tfd: N events: X data: Y" part of each registration line of an epoll fd's fdinfo, sorted. */
static void registrations(int ep, char *out, size_t size)
{
	char path[64], info[4096], *lines[64];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	if (read_whole(path, info, sizeof(info)) < 0)
		test_abort("fdinfo: %s", strerror(errno));
	for (char *l = strtok(info, "\n"); l && n < 64; l = strtok(NULL, "\n")) {
		if (strncmp(l, "tfd:", 4))
			continue;
		char *pos = strstr(l, " pos:");
		if (pos)
			*pos = 0;
		lines[n++] = l;
	}
	qsort(lines, n, sizeof(char *), by_text);
	out[0] = 0;
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), size - strlen(out), "%s\n", lines[i]);
}

/* The data of the one event the outer set reports now, 0 for none; fails on more than one. */
static uint64_t one_event(void)
{
	struct epoll_event ev[8];
	int n = epoll_wait(outer, ev, 8, 0);
	if (n > 1)
		fail("%d events at once (first data %#llx)", n, (unsigned long long)ev[0].data.u64);
	return n >= 1 ? ev[0].data.u64 : 0;
}

int main(int argc, char **argv)
{
	uint64_t v = 1, got;
	char after[4096];

	test_init(argc, argv);
	outer = epoll_create1(0);
	inner = epoll_create1(EPOLL_CLOEXEC);
	counted = eventfd(0, EFD_NONBLOCK);
	oneshot = eventfd(0, EFD_NONBLOCK);
	innerev = eventfd(0, EFD_NONBLOCK);
	int x = eventfd(0, EFD_NONBLOCK);
	if (outer < 0 || inner < 0 || counted < 0 || x < 0 || pipe(pipefd))
		test_abort("setup: %s", strerror(errno));
	add(outer, counted, EPOLLIN, 0x1111);
	add(outer, pipefd[0], EPOLLIN | EPOLLET, 0x2222);
	add(outer, x, EPOLLIN, 0x3333);
	moved = dup(x);
	close(x);
	add(outer, oneshot, EPOLLOUT | EPOLLONESHOT, 0x6666);
	if (one_event() != 0x6666)
		test_abort("the one-shot registration did not fire");
	add(inner, innerev, EPOLLIN, 0x5555);
	add(outer, inner, EPOLLIN, 0x4444);
	write(counted, &v, sizeof(v));
	registrations(outer, before, sizeof(before));
	registrations(inner, before + strlen(before), sizeof(before) - strlen(before));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		epoll_ctl(outer, EPOLL_CTL_DEL, pipefd[0], NULL);
	registrations(outer, after, sizeof(after));
	registrations(inner, after + strlen(after), sizeof(after) - strlen(after));
	if (strcmp(before, after)) {
		test_msg("registrations before the dump:\n%s---- now:\n%s", before, after);
		fail("the registrations fdinfo lists changed");
	}
	if ((got = one_event()) != 0x1111)
		fail("the counted eventfd is not ready (event data %#llx)", (unsigned long long)got);
	read(counted, &v, sizeof(v));
	if ((got = one_event()) != 0)
		fail("an event with nothing ready: data %#llx", (unsigned long long)got);
	write(pipefd[1], "x", 1);
	if ((got = one_event()) != 0x2222 || one_event() != 0)
		fail("the pipe's edge-triggered registration: data %#llx", (unsigned long long)got);
	read(pipefd[0], after, 1);
	write(moved, &v, sizeof(v));
	if ((got = one_event()) != 0x3333)
		fail("the registration of the moved eventfd: data %#llx", (unsigned long long)got);
	read(moved, &v, sizeof(v));
	write(innerev, &v, sizeof(v));
	if ((got = one_event()) != 0x4444)
		fail("the nested set does not wake the outer one: data %#llx", (unsigned long long)got);
	struct epoll_event ev;
	if (epoll_wait(inner, &ev, 1, 0) != 1 || ev.data.u64 != 0x5555)
		fail("the nested set does not report its eventfd");
	if (!(fcntl(inner, F_GETFD) & FD_CLOEXEC) || (fcntl(outer, F_GETFD) & FD_CLOEXEC))
		fail("close-on-exec flags changed");
	return test_finish();
}
