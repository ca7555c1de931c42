/*
 * tcp_listen: three listening TCP sockets: IPv4 on 127.0.0.1 (backlog 3, SO_REUSEADDR, TCP_NODELAY,
 * KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT, TCP_USER_TIMEOUT, TCP_CONGESTION reno, TCP_MAXSEG 1000,
 * IP_TOS, O_NONBLOCK), IPv6 on ::1 with IPV6_V6ONLY (backlog 2, SO_REUSEPORT, TCP_CORK) and a
 * v4-mapped one (an IPv6 socket on ::ffff:127.0.0.1, V6ONLY off, backlog 1); plus an unbound
 * and a bound-not-listening socket.  After restore: the same addresses and ports, still listening,
 * each option as set, the backlog as set (backlog + 1 connections complete, the next one waits),
 * and each accepted connection carries data both ways.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 8

struct lsk {
	int fd, family, backlog;
	const char *addr, *what;
	struct sockaddr_storage name;
	socklen_t len;
};

static void seti(int fd, int level, int opt, int v)
{
	if (inet_seti(fd, level, opt, v))
		test_abort("setsockopt %d/%d: %s", level, opt, strerror(errno));
}

static void listen_on(struct lsk *l, int v6only)
{
	l->fd = socket(l->family, SOCK_STREAM, 0);
	if (l->fd < 0)
		test_abort("socket: %s", strerror(errno));
	if (l->family == AF_INET6)
		seti(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only);
	l->len = inet_addr_of(l->family, l->addr, 0, &l->name);
	if (bind(l->fd, (struct sockaddr *)&l->name, l->len) || listen(l->fd, l->backlog))
		test_abort("%s: bind/listen: %s", l->what, strerror(errno));
	l->len = sizeof(l->name);
	getsockname(l->fd, (struct sockaddr *)&l->name, &l->len);
}

static int connected(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	return poll(&p, 1, 300) == 1 && inet_geti(fd, SOL_SOCKET, SO_ERROR) == 0;
}

static void check_listener(struct lsk *l)
{
	struct sockaddr_storage now;
	socklen_t len = sizeof(now);
	int c[MAXC], n, i;
	char buf[8];

	if (inet_geti(l->fd, SOL_SOCKET, SO_ACCEPTCONN) != 1) {
		fail("%s: no longer listening", l->what);
		return;
	}
	if (getsockname(l->fd, (struct sockaddr *)&now, &len) || len != l->len || memcmp(&now, &l->name, len)) {
		fail("%s: bound elsewhere", l->what);
		return;
	}
	/* the accept queue takes backlog + 1 connections; the SYN of the next one is dropped */
	for (n = 0; n <= l->backlog + 1; n++) {
		c[n] = socket(l->family, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(c[n], (struct sockaddr *)&l->name, l->len) && errno != EINPROGRESS)
			fail("%s: connect: %s", l->what, strerror(errno));
		if (connected(c[n]) != (n <= l->backlog))
			fail("%s: connection %d %s (backlog %d)", l->what, n,
			     n <= l->backlog ? "not made" : "made", l->backlog);
	}
	for (i = 0; i <= l->backlog; i++) {
		int s = -1;
		struct pollfd p = { .fd = l->fd, .events = POLLIN };

		poll(&p, 1, 1000);
		s = accept(l->fd, NULL, NULL);
		if (s < 0) {
			fail("%s: accept %d: %s", l->what, i, strerror(errno));
			break;
		}
		if (write(c[i], "ping", 4) != 4 || write(s, "pong", 4) != 4)
			fail("%s: write: %s", l->what, strerror(errno));
		p.fd = s;
		poll(&p, 1, 1000);
		if (read(s, buf, sizeof(buf)) != 4 || memcmp(buf, "ping", 4))
			fail("%s: accepted connection %d lost data", l->what, i);
		p.fd = c[i];
		poll(&p, 1, 1000);
		if (read(c[i], buf, sizeof(buf)) != 4 || memcmp(buf, "pong", 4))
			fail("%s: client %d lost data", l->what, i);
		close(s);
	}
	for (i = 0; i < n; i++)
		close(c[i]);
}

#define EXPECT(fd, level, opt, want)                                                      \
	do {                                                                              \
		int got_ = inet_geti(fd, level, opt);                                          \
		if (got_ != (want))                                                       \
			fail(#opt " is %d, not %d", got_, (int)(want));                   \
	} while (0)

int main(int argc, char **argv)
{
	struct lsk ls[] = {
		{ .family = AF_INET, .addr = "127.0.0.1", .backlog = 3, .what = "IPv4 listener" },
		{ .family = AF_INET6, .addr = "::1", .backlog = 2, .what = "IPv6 listener" },
		{ .family = AF_INET6, .addr = "::ffff:127.0.0.1", .backlog = 1, .what = "v4-mapped listener" },
	};
	struct sockaddr_storage bname;
	socklen_t blen;
	int unbound, bound, i;
	char cc[16] = "";
	socklen_t cclen = sizeof(cc);

	test_init(argc, argv);
	listen_on(&ls[0], 0);
	seti(ls[0].fd, SOL_SOCKET, SO_REUSEADDR, 1);
	seti(ls[0].fd, IPPROTO_TCP, TCP_NODELAY, 1);
	seti(ls[0].fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	seti(ls[0].fd, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	seti(ls[0].fd, IPPROTO_TCP, TCP_KEEPINTVL, 11);
	seti(ls[0].fd, IPPROTO_TCP, TCP_KEEPCNT, 5);
	seti(ls[0].fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345);
	seti(ls[0].fd, IPPROTO_TCP, TCP_MAXSEG, 1000);
	seti(ls[0].fd, IPPROTO_IP, IP_TOS, 0x10);
	if (setsockopt(ls[0].fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4))
		test_abort("TCP_CONGESTION reno: %s", strerror(errno));
	fcntl(ls[0].fd, F_SETFL, O_NONBLOCK);
	listen_on(&ls[1], 1);
	seti(ls[1].fd, SOL_SOCKET, SO_REUSEPORT, 1);
	seti(ls[1].fd, IPPROTO_TCP, TCP_CORK, 1);
	listen_on(&ls[2], 0);
	unbound = socket(AF_INET, SOCK_STREAM, 0);
	bound = socket(AF_INET6, SOCK_STREAM, 0);
	blen = inet_addr_of(AF_INET6, "::1", 0, &bname);
	if (bind(bound, (struct sockaddr *)&bname, blen))
		test_abort("bind: %s", strerror(errno));
	blen = sizeof(bname);
	getsockname(bound, (struct sockaddr *)&bname, &blen);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		seti(ls[0].fd, IPPROTO_TCP, TCP_KEEPIDLE, 78);
	EXPECT(ls[0].fd, SOL_SOCKET, SO_REUSEADDR, 1);
	EXPECT(ls[0].fd, IPPROTO_TCP, TCP_NODELAY, 1);
	EXPECT(ls[0].fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	EXPECT(ls[0].fd, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	EXPECT(ls[0].fd, IPPROTO_TCP, TCP_KEEPINTVL, 11);
	EXPECT(ls[0].fd, IPPROTO_TCP, TCP_KEEPCNT, 5);
	EXPECT(ls[0].fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345);
	EXPECT(ls[0].fd, IPPROTO_TCP, TCP_MAXSEG, 1000);
	EXPECT(ls[0].fd, IPPROTO_IP, IP_TOS, 0x10);
	if (getsockopt(ls[0].fd, IPPROTO_TCP, TCP_CONGESTION, cc, &cclen) || strcmp(cc, "reno"))
		fail("TCP_CONGESTION is %s, not reno", cc);
	if (!(fcntl(ls[0].fd, F_GETFL) & O_NONBLOCK))
		fail("the IPv4 listener lost O_NONBLOCK");
	EXPECT(ls[1].fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	EXPECT(ls[1].fd, SOL_SOCKET, SO_REUSEADDR, 0);
	EXPECT(ls[1].fd, SOL_SOCKET, SO_REUSEPORT, 1);
	EXPECT(ls[1].fd, IPPROTO_TCP, TCP_CORK, 1);
	EXPECT(ls[2].fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
	EXPECT(unbound, SOL_SOCKET, SO_DOMAIN, AF_INET);
	EXPECT(bound, SOL_SOCKET, SO_DOMAIN, AF_INET6);
	{
		struct sockaddr_storage now;
		socklen_t len = sizeof(now);

		if (getsockname(bound, (struct sockaddr *)&now, &len) || len != blen || memcmp(&now, &bname, len))
			fail("the bound socket is bound elsewhere");
		len = sizeof(now);
		if (getsockname(unbound, (struct sockaddr *)&now, &len) || ((struct sockaddr_in *)&now)->sin_port)
			fail("the unbound socket is bound");
	}
	for (i = 0; i < 3; i++)
		check_listener(&ls[i]);
	return test_finish();
}
