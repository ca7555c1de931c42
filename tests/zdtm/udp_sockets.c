/*
 * udp_sockets: UDP and UDP-Lite sockets in every state crpy restores.  A v4 pair connected to each
 * other (SO_BROADCAST, IP_TOS, IP_TTL, SO_RCVBUF, O_NONBLOCK on one), a v4 socket bound to a port
 * and unconnected (SO_REUSEADDR, IP_RECVERR), an unbound one, a v6 socket bound to ::1, a dual-stack
 * v6 socket connected to a v4-mapped address, a UDP-Lite v6 pair with checksum coverage, a socket
 * with UDP_CORK set (nothing pending), one shut for reading and one shut both ways.
 * After restore: names, peers, options and flags as they were, no datagram queued anywhere, and
 * every pair still carries datagrams (v4, v6, v4-mapped, UDP-Lite) both ways.
 */
#include "lib/zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11

struct snap {
	struct sockaddr_storage name, peer;
	socklen_t nlen, plen;
};

static void take_snap(int fd, struct snap *s)
{
	s->nlen = s->plen = sizeof(s->name);
	memset(s, 0, sizeof(*s));
	s->nlen = s->plen = sizeof(s->name);
	getsockname(fd, (struct sockaddr *)&s->name, &s->nlen);
	if (getpeername(fd, (struct sockaddr *)&s->peer, &s->plen))
		s->plen = 0;
}

static int same_snap(int fd, const struct snap *a)
{
	struct snap b;
	take_snap(fd, &b);
	return a->nlen == b.nlen && a->plen == b.plen && !memcmp(&a->name, &b.name, a->nlen) &&
	       !memcmp(&a->peer, &b.peer, a->plen);
}

static int opt(int fd, int level, int name)
{
	int v = -12345;
	socklen_t len = sizeof(v);
	getsockopt(fd, level, name, &v, &len);
	return v;
}

static void mkpair(int family, int proto, int *a, int *b)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	sa.ss_family = family;
	if (family == AF_INET)
		((struct sockaddr_in *)&sa)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&sa)->sin6_addr = in6addr_loopback;
	*a = socket(family, SOCK_DGRAM, proto);
	*b = socket(family, SOCK_DGRAM, proto);
	if (*a < 0 || *b < 0 || bind(*a, (struct sockaddr *)&sa, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) ||
	    bind(*b, (struct sockaddr *)&sa, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)))
		test_abort("pair socket/bind: %s", strerror(errno));
	getsockname(*b, (struct sockaddr *)&sa, &len);
	if (connect(*a, (struct sockaddr *)&sa, len))
		test_abort("connect: %s", strerror(errno));
	len = sizeof(sa);
	getsockname(*a, (struct sockaddr *)&sa, &len);
	if (connect(*b, (struct sockaddr *)&sa, len))
		test_abort("connect: %s", strerror(errno));
}

/* a datagram from a to b arrives whole, and b's queue is empty afterwards */
static void carries(int a, int b, const char *what)
{
	char buf[64];
	struct pollfd p = {.fd = b, .events = POLLIN};
	if (send(a, what, strlen(what), 0) != (ssize_t)strlen(what)) {
		fail("%s: send: %s", what, strerror(errno));
		return;
	}
	if (poll(&p, 1, 2000) != 1) {
		fail("%s: nothing arrived", what);
		return;
	}
	ssize_t n = recv(b, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)strlen(what) || memcmp(buf, what, n))
		fail("%s: got %zd bytes, not the datagram", what, n);
	if (recv(b, buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("%s: more than one datagram arrived", what);
}

static void empty(int fd, const char *what)
{
	char c;
	if (recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) != -1 || errno != EAGAIN)
		fail("%s: a datagram is queued (%s)", what, strerror(errno));
}

int main(int argc, char **argv)
{
	int a4, b4, bound, unbound, v6, mapped, la, lb, cork, shut_rd, shut_both, one = 1, tos = 0x10, ttl = 17;
	int rcvbuf = 65536, cov = 12;
	struct snap s_a4, s_b4, s_bound, s_unbound, s_v6, s_mapped, s_la, s_lb, s_cork, s_rd, s_both;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};

	test_init(argc, argv);
	mkpair(AF_INET, 0, &a4, &b4);
	if (setsockopt(a4, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) ||
	    setsockopt(a4, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)) ||
	    setsockopt(a4, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) ||
	    setsockopt(b4, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)))
		test_abort("options: %s", strerror(errno));
	fcntl(b4, F_SETFL, O_NONBLOCK);

	bound = socket(AF_INET, SOCK_DGRAM, 0);
	setsockopt(bound, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(bound, IPPROTO_IP, IP_RECVERR, &one, sizeof(one));
	if (bound < 0 || bind(bound, (struct sockaddr *)&sin, sizeof(sin)))
		test_abort("bound: %s", strerror(errno));
	unbound = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	v6 = socket(AF_INET6, SOCK_DGRAM, 0);
	setsockopt(v6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (v6 < 0 || bind(v6, (struct sockaddr *)&s6, sizeof(s6)))
		test_abort("v6: %s", strerror(errno));

	/* dual-stack v6 socket connected to the v4 socket `bound` through its v4-mapped address */
	mapped = socket(AF_INET6, SOCK_DGRAM, 0);
	{
		struct sockaddr_in b;
		socklen_t len = sizeof(b);
		struct sockaddr_in6 m = {.sin6_family = AF_INET6};
		getsockname(bound, (struct sockaddr *)&b, &len);
		m.sin6_port = b.sin_port;
		inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
		if (mapped < 0 || connect(mapped, (struct sockaddr *)&m, sizeof(m)))
			test_abort("v4-mapped connect: %s", strerror(errno));
	}

	mkpair(AF_INET6, IPPROTO_UDPLITE, &la, &lb);
	if (setsockopt(la, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &cov, sizeof(cov)) ||
	    setsockopt(lb, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, &cov, sizeof(cov)))
		test_abort("UDP-Lite coverage: %s", strerror(errno));

	cork = socket(AF_INET, SOCK_DGRAM, 0);
	if (cork < 0 || setsockopt(cork, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)))
		test_abort("UDP_CORK: %s", strerror(errno));
	mkpair(AF_INET, 0, &shut_rd, &shut_both);
	if (shutdown(shut_rd, SHUT_RD) || shutdown(shut_both, SHUT_RDWR))
		test_abort("shutdown: %s", strerror(errno));

	take_snap(a4, &s_a4), take_snap(b4, &s_b4), take_snap(bound, &s_bound), take_snap(unbound, &s_unbound);
	take_snap(v6, &s_v6), take_snap(mapped, &s_mapped), take_snap(la, &s_la), take_snap(lb, &s_lb);
	take_snap(cork, &s_cork), take_snap(shut_rd, &s_rd), take_snap(shut_both, &s_both);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		int zero = 0;
		setsockopt(a4, SOL_SOCKET, SO_BROADCAST, &zero, sizeof(zero));
	}
	if (!same_snap(a4, &s_a4) || !same_snap(b4, &s_b4))
		fail("the v4 pair's names or peers changed");
	if (!same_snap(bound, &s_bound) || !same_snap(unbound, &s_unbound))
		fail("the bound or unbound socket's name changed");
	if (!same_snap(v6, &s_v6) || !same_snap(mapped, &s_mapped))
		fail("the v6 or v4-mapped socket's name or peer changed");
	if (!same_snap(la, &s_la) || !same_snap(lb, &s_lb))
		fail("the UDP-Lite pair's names or peers changed");
	if (!same_snap(cork, &s_cork) || !same_snap(shut_rd, &s_rd) || !same_snap(shut_both, &s_both))
		fail("the corked or shut sockets' names changed");
	if (opt(a4, SOL_SOCKET, SO_BROADCAST) != 1)
		fail("SO_BROADCAST is off");
	if (opt(a4, IPPROTO_IP, IP_TOS) != tos || opt(a4, IPPROTO_IP, IP_TTL) != ttl)
		fail("IP_TOS %d IP_TTL %d, not %d %d", opt(a4, IPPROTO_IP, IP_TOS), opt(a4, IPPROTO_IP, IP_TTL), tos, ttl);
	if (opt(b4, SOL_SOCKET, SO_RCVBUF) != 2 * rcvbuf)
		fail("SO_RCVBUF is %d, not %d", opt(b4, SOL_SOCKET, SO_RCVBUF), 2 * rcvbuf);
	if (!(fcntl(b4, F_GETFL) & O_NONBLOCK) || (fcntl(a4, F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK changed");
	if (!(fcntl(unbound, F_GETFD) & FD_CLOEXEC))
		fail("the unbound socket lost close-on-exec");
	if (opt(bound, SOL_SOCKET, SO_REUSEADDR) != 1 || opt(bound, IPPROTO_IP, IP_RECVERR) != 1)
		fail("SO_REUSEADDR or IP_RECVERR is off");
	if (opt(v6, IPPROTO_IPV6, IPV6_V6ONLY) != 1 || opt(mapped, IPPROTO_IPV6, IPV6_V6ONLY) != 0)
		fail("IPV6_V6ONLY changed");
	if (opt(la, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV) != cov || opt(lb, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV) != cov)
		fail("UDP-Lite checksum coverage changed");
	if (opt(cork, IPPROTO_UDP, UDP_CORK) != 1)
		fail("UDP_CORK is off");
	{
		struct pollfd p[2] = {{.fd = shut_rd, .events = POLLIN | POLLRDHUP}, {.fd = shut_both, .events = POLLIN}};
		poll(p, 2, 0);
		if (!(p[0].revents & POLLRDHUP) || (p[0].revents & POLLHUP))
			fail("the socket shut for reading shows revents %#x", p[0].revents);
		if (!(p[1].revents & POLLHUP))
			fail("the socket shut both ways shows revents %#x", p[1].revents);
		if (send(shut_both, "x", 1, 0) != -1 || errno != EPIPE)
			fail("a send on the socket shut both ways did not fail with EPIPE");
	}
	empty(a4, "a4"), empty(b4, "b4"), empty(bound, "bound"), empty(v6, "v6"), empty(la, "la"), empty(lb, "lb");
	carries(a4, b4, "v4 a->b");
	carries(b4, a4, "v4 b->a");
	carries(mapped, bound, "v4-mapped -> v4");
	carries(la, lb, "UDP-Lite a->b");
	carries(lb, la, "UDP-Lite b->a");
	{
		char c = 0;
		struct pollfd p = {.fd = bound, .events = POLLIN};
		if (sendto(unbound, "x", 1, 0, (struct sockaddr *)&s_bound.name, s_bound.nlen) != 1)
			fail("the unbound socket cannot send: %s", strerror(errno));
		else if (poll(&p, 1, 2000) != 1 || recv(bound, &c, 1, MSG_DONTWAIT) != 1 || c != 'x')
			fail("the bound socket did not receive the unbound one's datagram");
	}
	return test_finish();
}
