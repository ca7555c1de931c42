/*
 * tcp_close (dumped and restored with --tcp-close, criu's): established TCP connections are not
 * saved and come back closed, the rest of the sockets as they were.
 *   A: an IPv4 connection over loopback, both ends in the test, a message queued each way, its
 *      listener still open; SO_KEEPALIVE with TCP_KEEPIDLE 77 on the client, TCP_NODELAY on the
 *      accepted end.
 *   B: an IPv6 (::1) connection, both ends in the test.
 * After restore both ends of A and B are TCP sockets of their family, closed (TCP_INFO says
 * CLOSE, no peer name, a read gives ENOTCONN), with their options; the listener still accepts,
 * and A's closed client connects to it afresh and talks (what a program does after a lost
 * connection).
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* a listener on family/addr, a client connected to it, the accepted end; the listener's name in *ss */
static int tcp_pair(int family, const char *addr, int *client, int *server, struct sockaddr_storage *ss, socklen_t *len)
{
	int l = socket(family, SOCK_STREAM, 0);

	*len = inet_addr_of(family, addr, 0, ss);
	if (l < 0 || bind(l, (struct sockaddr *)ss, *len) || listen(l, 4) || getsockname(l, (struct sockaddr *)ss, len))
		test_abort("listen on %s: %s", addr, strerror(errno));
	*client = socket(family, SOCK_STREAM, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)ss, *len))
		test_abort("connect to %s: %s", addr, strerror(errno));
	*server = accept(l, NULL, NULL);
	if (*server < 0)
		test_abort("accept: %s", strerror(errno));
	return l;
}

/* fd is a closed TCP socket of `family`: the state, no peer, a read refused */
static void expect_closed(int fd, int family, const char *what)
{
	int state = inet_tcp_state(fd);
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	char c;

	if (inet_geti(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM || inet_geti(fd, SOL_SOCKET, SO_DOMAIN) != family ||
	    inet_geti(fd, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP) {
		fail("%s is not a TCP socket of its family any more", what);
		return;
	}
	if (state != TCP_CLOSE)
		fail("%s is in TCP state %d, not closed (%d)", what, state, TCP_CLOSE);
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 || errno != ENOTCONN)
		fail("%s still has a peer", what);
	if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != ENOTCONN)
		fail("%s: a read gives no ENOTCONN (%s)", what, strerror(errno));
}

int main(int argc, char **argv)
{
	int la, ca, sa, lb, cb, sb, again;
	struct sockaddr_storage ssa, ssb;
	socklen_t lena, lenb;

	test_init(argc, argv);
	la = tcp_pair(AF_INET, "127.0.0.1", &ca, &sa, &ssa, &lena);
	inet_seti(ca, SOL_SOCKET, SO_KEEPALIVE, 1);
	inet_seti(ca, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	inet_seti(sa, IPPROTO_TCP, TCP_NODELAY, 1);
	if (send(ca, "up", 2, 0) != 2 || send(sa, "down", 4, 0) != 4)
		test_abort("send: %s", strerror(errno));
	lb = tcp_pair(AF_INET6, "::1", &cb, &sb, &ssb, &lenb);
	close(lb);
	usleep(10000);                 /* the queued messages are in */
	test_daemon();

	test_waitsig();
	if (zdtm_break)                /* as if the connection had come back: the check must see it */
		if (close(ca) || (ca = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(ca, (struct sockaddr *)&ssa, lena))
			fail("break: cannot connect again");
	expect_closed(ca, AF_INET, "A's client");
	expect_closed(sa, AF_INET, "A's accepted end");
	expect_closed(cb, AF_INET6, "B's client");
	expect_closed(sb, AF_INET6, "B's accepted end");
	if (inet_geti(ca, SOL_SOCKET, SO_KEEPALIVE) != 1 || inet_geti(ca, IPPROTO_TCP, TCP_KEEPIDLE) != 77)
		fail("A's client lost SO_KEEPALIVE or TCP_KEEPIDLE (%d)", inet_geti(ca, IPPROTO_TCP, TCP_KEEPIDLE));
	if (inet_geti(sa, IPPROTO_TCP, TCP_NODELAY) != 1)
		fail("A's accepted end lost TCP_NODELAY");
	if (inet_geti(la, SOL_SOCKET, SO_ACCEPTCONN) != 1)
		fail("A's listener no longer listens");
	if (connect(ca, (struct sockaddr *)&ssa, lena))
		fail("A's client cannot connect again: %s", strerror(errno));
	else if ((again = accept(la, NULL, NULL)) < 0)
		fail("the listener does not accept: %s", strerror(errno));
	else if (send(ca, "again", 5, 0) != 5 || !inet_recv_exact(again, "again") || send(again, "back", 4, 0) != 4 ||
		 !inet_recv_exact(ca, "back"))
		fail("the new connection does not talk");
	return test_finish();
}
