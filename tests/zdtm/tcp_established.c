/*
 * tcp_established (dumped with --tcp-established): established TCP connections of the tree.
 *   A: IPv4 over loopback, both ends in the parent, its listener still open (the accepted end
 *      shares its port); 64 KiB buffers, each side wrote until EAGAIN: both receive queues full
 *      and bytes in both send queues that could not be sent (window closed); TCP_NODELAY and
 *      SO_REUSEADDR on the client (repair mode overrides the latter while it lasts).
 *   B: IPv6 (::1), the client in a child, the server in the parent, a message queued each way.
 *   C: an IPv4 client accepted by a v4-mapped IPv6 listener (::ffff:127.0.0.1), a message each way.
 * After restore every byte arrives once, in order, and no more; the connections carry new data
 * both ways, the child talks to its parent, options and names are as they were.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* a listener on family/addr, a client of cfamily/caddr connected to it, the accepted end */
static int tcp_pair(int family, const char *addr, int cfamily, const char *caddr, int bufsz, int *client, int *server)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_addr_of(family, addr, 0, &ss);
	int l = socket(family, SOCK_STREAM, 0), port;

	if (family == AF_INET6)
		inet_seti(l, IPPROTO_IPV6, IPV6_V6ONLY, 0);
	if (bufsz)
		inet_seti(l, SOL_SOCKET, SO_RCVBUF, bufsz), inet_seti(l, SOL_SOCKET, SO_SNDBUF, bufsz);
	if (l < 0 || bind(l, (struct sockaddr *)&ss, len) || listen(l, 4) || getsockname(l, (struct sockaddr *)&ss, &len))
		test_abort("listen on %s: %s", addr, strerror(errno));
	port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
	if (client) {
		*client = socket(cfamily, SOCK_STREAM, 0);
		if (bufsz)
			inet_seti(*client, SOL_SOCKET, SO_RCVBUF, bufsz), inet_seti(*client, SOL_SOCKET, SO_SNDBUF, bufsz);
		len = inet_addr_of(cfamily, caddr, port, &ss);
		if (connect(*client, (struct sockaddr *)&ss, len))
			test_abort("connect to %s: %s", caddr, strerror(errno));
		*server = accept(l, NULL, NULL);
		if (*server < 0)
			test_abort("accept: %s", strerror(errno));
	}
	return l;
}

struct reader {
	int fd, seed;
	unsigned long want, got;
	const char *what;
};

/* read both directions of a filled connection to the end: each byte once, in order */
static void drain(struct reader *r, int n)
{
	unsigned char buf[8192];
	int left = n, rounds = 0;

	while (left && rounds++ < 2000) {
		struct pollfd p[2];

		for (int i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = r[i].got < r[i].want ? r[i].fd : -1, .events = POLLIN };
		if (poll(p, n, 5000) <= 0) {
			fail("no data for 5 s");
			return;
		}
		for (int i = 0; i < n; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			ssize_t got = recv(r[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (got <= 0) {
				fail("%s: read gave %zd (%s) after %lu of %lu bytes", r[i].what, got, strerror(errno),
				     r[i].got, r[i].want);
				return;
			}
			for (ssize_t k = 0; k < got; k++)
				if (buf[k] != inet_pattern(r[i].got + k, r[i].seed)) {
					fail("%s: byte %lu differs", r[i].what, r[i].got + k);
					return;
				}
			r[i].got += got;
			if (r[i].got > r[i].want) {
				fail("%s: %lu bytes, more than the %lu written", r[i].what, r[i].got, r[i].want);
				return;
			}
			if (r[i].got == r[i].want)
				left--;
		}
	}
	for (int i = 0; i < n; i++)
		if (recv(r[i].fd, buf, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
			fail("%s: more data than written", r[i].what);
}

static void talk(int a, int b, const char *what)
{
	if (send(a, "ping", 4, 0) != 4 || !inet_recv_exact(b, "ping") || send(b, "pong", 4, 0) != 4 || !inet_recv_exact(a, "pong"))
		fail("%s: no new data both ways", what);
}

int main(int argc, char **argv)
{
	int la, ca, sa, lb, sb, lc, cc, sc;
	struct sockaddr_storage before, after;
	socklen_t blen = sizeof(before), alen = sizeof(after);
	unsigned long c2s, s2c;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	la = tcp_pair(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1", 65536, &ca, &sa);
	inet_seti(ca, IPPROTO_TCP, TCP_NODELAY, 1);
	inet_seti(ca, SOL_SOCKET, SO_REUSEADDR, 1);     /* repair mode overrides it: must come back */
	c2s = inet_fill(ca, 1);
	s2c = inet_fill(sa, 2);
	lc = tcp_pair(AF_INET6, "::ffff:127.0.0.1", AF_INET, "127.0.0.1", 0, &cc, &sc);
	close(lc);
	if (send(cc, "mapped up", 9, 0) != 9 || send(sc, "mapped down", 11, 0) != 11)
		test_abort("send: %s", strerror(errno));
	getpeername(sc, (struct sockaddr *)&before, &blen);

	lb = tcp_pair(AF_INET6, "::1", 0, NULL, 0, NULL, NULL);
	kid = test_fork();
	if (kid == 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int c = socket(AF_INET6, SOCK_STREAM, 0);

		getsockname(lb, (struct sockaddr *)&ss, &len);
		close(lb);
		if (connect(c, (struct sockaddr *)&ss, len) || send(c, "to parent", 9, 0) != 9)
			_exit(1);
		test_usr1_wait();
		if (!inet_recv_exact(c, "to child"))
			_exit(2);
		if (send(c, "after", 5, 0) != 5)
			_exit(3);
		_exit(0);
	}
	sb = accept(lb, NULL, NULL);
	if (sb < 0 || send(sb, "to child", 8, 0) != 8)
		test_abort("accept/send: %s", strerror(errno));
	close(lb);
	usleep(100000);               /* the child's message is in */
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		char x;
		recv(sa, &x, 1, MSG_DONTWAIT);
	}
	if (inet_geti(ca, IPPROTO_TCP, TCP_NODELAY) != 1)
		fail("TCP_NODELAY lost");
	if (inet_geti(ca, SOL_SOCKET, SO_REUSEADDR) != 1 || inet_geti(sa, SOL_SOCKET, SO_REUSEADDR) != 0)
		fail("SO_REUSEADDR is %d and %d, not 1 and 0", inet_geti(ca, SOL_SOCKET, SO_REUSEADDR),
		     inet_geti(sa, SOL_SOCKET, SO_REUSEADDR));
	if (inet_geti(la, SOL_SOCKET, SO_ACCEPTCONN) != 1)
		fail("the listener of A no longer listens");
	struct reader r[] = { { sa, 1, c2s, 0, "A client to server" }, { ca, 2, s2c, 0, "A server to client" } };
	drain(r, 2);
	talk(ca, sa, "A");
	if (!inet_recv_exact(sc, "mapped up") || !inet_recv_exact(cc, "mapped down"))
		fail("C lost its queued messages");
	if (getpeername(sc, (struct sockaddr *)&after, &alen) || alen != blen || memcmp(&after, &before, alen) ||
	    after.ss_family != AF_INET6)
		fail("C's accepted end has another peer name");
	talk(cc, sc, "C");
	if (!inet_recv_exact(sb, "to parent"))
		fail("B: the child's message is lost");
	kill(kid, SIGUSR1);
	if (!inet_recv_exact(sb, "after"))
		fail("B: the child's message after restore did not come");
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child exited %d", code);
	return test_finish();
}
