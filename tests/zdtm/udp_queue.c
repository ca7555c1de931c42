/*
 * udp_queue: datagrams waiting on UDP sockets, queued again exactly by the restore, each from its
 * sender.  A v4 socket bound to 127.0.0.1 (SO_RCVBUF 1 MiB) holds, in order: a datagram from a
 * sender on 127.0.0.1, a 0-byte one and a 60000-byte one from a sender on 127.0.0.2 (closed
 * since), one more from the first sender.  A dual-stack v6 socket bound to any address holds one
 * from a v4 sender and one from a v6 sender on ::1.  A connected v4 socket holds two from its
 * peer.  After restore: every datagram in order, whole, with its sender's address and port, then
 * nothing more; the senders still send, the connected socket still receives from its peer.
 */
#include "lib/zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG 60000

static unsigned char big[BIG], buf[BIG + 100];

static int mksock(int family, const char *host, struct sockaddr_storage *ss, socklen_t *len)
{
	int s = socket(family, SOCK_DGRAM, 0);
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = family;
	if (family == AF_INET)
		inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr), *len = sizeof(struct sockaddr_in);
	else
		inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr), *len = sizeof(struct sockaddr_in6);
	if (s < 0 || bind(s, (struct sockaddr *)ss, *len) || getsockname(s, (struct sockaddr *)ss, len))
		test_abort("socket on %s: %s", host, strerror(errno));
	return s;
}

static void put(int from, const void *data, size_t len, const struct sockaddr_storage *to, socklen_t tolen)
{
	if (sendto(from, data, len, 0, (const struct sockaddr *)to, tolen) != (ssize_t)len)
		test_abort("sendto: %s", strerror(errno));
}

/* the next datagram on fd is `len` bytes of pattern `seed` (0: "x" repeated) from `from` */
static void expect(int fd, size_t len, uint64_t seed, const struct sockaddr *from, socklen_t fromlen, const char *what)
{
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	memset(&got, 0, sizeof(got));
	ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&got, &glen);
	if (n != (ssize_t)len) {
		fail("%s: %zd bytes, not %zu (%s)", what, n, len, n < 0 ? strerror(errno) : "");
		return;
	}
	if (seed && check_pattern(buf, len, seed) != -1)
		fail("%s: the bytes changed", what);
	if (glen != fromlen || memcmp(&got, from, fromlen))
		fail("%s: not from its sender", what);
}

static void drained(int fd, const char *what)
{
	if (recv(fd, buf, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("%s: more datagrams than were queued", what);
}

int main(int argc, char **argv)
{
	struct sockaddr_storage r4a, s1a, s2a, r6a, s6a, ca, pa, m1;
	socklen_t r4l, s1l, s2l, r6l, s6l, cl, pl;
	int r4, s1, s2, r6, s6, c, p, rcvbuf = 1 << 20, zero = 0;
	struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_in to4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	test_init(argc, argv);
	fill_pattern(big, BIG, 3);
	r4 = mksock(AF_INET, "127.0.0.1", &r4a, &r4l);
	setsockopt(r4, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	s1 = mksock(AF_INET, "127.0.0.1", &s1a, &s1l);
	s2 = mksock(AF_INET, "127.0.0.2", &s2a, &s2l);
	put(s1, "first", 5, &r4a, r4l);
	put(s2, "", 0, &r4a, r4l);
	put(s2, big, BIG, &r4a, r4l);
	close(s2);
	put(s1, "last", 4, &r4a, r4l);

	r6 = socket(AF_INET6, SOCK_DGRAM, 0);
	setsockopt(r6, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	{
		struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
		r6l = sizeof(r6a);
		if (bind(r6, (struct sockaddr *)&any, sizeof(any)) || getsockname(r6, (struct sockaddr *)&r6a, &r6l))
			test_abort("dual-stack bind: %s", strerror(errno));
	}
	s6 = mksock(AF_INET6, "::1", &s6a, &s6l);
	to4.sin_port = ((struct sockaddr_in6 *)&r6a)->sin6_port;
	to6.sin6_port = to4.sin_port;
	put(s1, "from v4", 7, (struct sockaddr_storage *)&to4, sizeof(to4));
	put(s6, "from v6", 7, (struct sockaddr_storage *)&to6, sizeof(to6));
	/* how the dual-stack socket names the v4 sender: ::ffff:127.0.0.1 */
	memset(&m1, 0, sizeof(m1));
	((struct sockaddr_in6 *)&m1)->sin6_family = AF_INET6;
	((struct sockaddr_in6 *)&m1)->sin6_port = ((struct sockaddr_in *)&s1a)->sin_port;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &((struct sockaddr_in6 *)&m1)->sin6_addr);

	c = mksock(AF_INET, "127.0.0.1", &ca, &cl);
	p = mksock(AF_INET, "127.0.0.1", &pa, &pl);
	if (connect(c, (struct sockaddr *)&pa, pl) || connect(p, (struct sockaddr *)&ca, cl))
		test_abort("connect: %s", strerror(errno));
	put(p, "peer 1", 6, &ca, cl);
	put(p, "peer 2", 6, &ca, cl);
	usleep(100000);                 /* loopback delivery is done in softirq: let it finish */
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(r4, buf, sizeof(buf), MSG_DONTWAIT);
	expect(r4, 5, 0, (struct sockaddr *)&s1a, s1l, "first datagram");
	expect(r4, 0, 0, (struct sockaddr *)&s2a, s2l, "0-byte datagram");
	expect(r4, BIG, 3, (struct sockaddr *)&s2a, s2l, "60000-byte datagram");
	expect(r4, 4, 0, (struct sockaddr *)&s1a, s1l, "last datagram");
	drained(r4, "the v4 socket");
	expect(r6, 7, 0, (struct sockaddr *)&m1, sizeof(struct sockaddr_in6), "v4 datagram on the dual-stack socket");
	expect(r6, 7, 0, (struct sockaddr *)&s6a, s6l, "v6 datagram on the dual-stack socket");
	drained(r6, "the dual-stack socket");
	expect(c, 6, 0, (struct sockaddr *)&pa, pl, "first from the peer");
	expect(c, 6, 0, (struct sockaddr *)&pa, pl, "second from the peer");
	drained(c, "the connected socket");
	{
		struct pollfd pf = {.fd = r4, .events = POLLIN};
		put(s1, "again", 5, &r4a, r4l);
		if (poll(&pf, 1, 2000) != 1)
			fail("a new datagram does not arrive");
		else
			expect(r4, 5, 0, (struct sockaddr *)&s1a, s1l, "a new datagram");
		put(p, "peer 3", 6, &ca, cl);
		pf.fd = c;
		if (poll(&pf, 1, 2000) != 1)
			fail("a new datagram from the peer does not arrive");
		else
			expect(c, 6, 0, (struct sockaddr *)&pa, pl, "a new datagram from the peer");
	}
	return test_finish();
}
