/*
 * unix_accepted: connections accepted from unix listeners, with data queued both ways:
 *  - a stream listener on a path, and a connection to it, accepted;
 *  - a second connection to it from a client bound to a path of its own first;
 *  - a seqpacket listener on an abstract name, closed after accepting its one connection;
 *  - an accepted stream connection whose client closed with data left to read.
 * After restore every end has its name and its peer's (getsockname/getpeername), reads exactly
 * what was queued for it, SO_PEERCRED names the test, the connections carry new data both ways, and the path listener
 * still accepts new connections.  (A client in another task than its server is refused at dump:
 * unix_peercred.)
 */
#include "lib/zdtmtst.h"
#include "lib/unixsk.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>




static int talks(int a, int b)
{
	return send(a, "ping", 4, 0) == 4 && unix_recv_is(b, "ping") && send(b, "pong", 4, 0) == 4 && unix_recv_is(a, "pong");
}

int main(int argc, char **argv)
{
	struct sockaddr_un la, ca, qa, none = { .sun_family = AF_UNIX };
	socklen_t llen, clen, qlen, nlen = sizeof(sa_family_t);
	char abstract[64];
	int l, c1, s1, s2, c2, lq, sq, cq, s3, c3;

	test_init(argc, argv);
	char *lpath = test_path(".listen.sock"), *cpath = test_path(".client.sock");
	unlink(lpath);
	unlink(cpath);
	snprintf(abstract, sizeof(abstract), "zdtm-unix-accepted-%d", getpid());
	llen = unix_addr(&la, lpath, 0);
	clen = unix_addr(&ca, cpath, 0);
	qlen = unix_addr(&qa, abstract, 1);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(l, (struct sockaddr *)&la, llen) || listen(l, 8))
		test_abort("listen: %s", strerror(errno));
	c1 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c1, (struct sockaddr *)&la, llen) || send(c1, "from c1", 7, 0) != 7)
		test_abort("first connection: %s", strerror(errno));
	s1 = accept(l, NULL, NULL);
	c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s1 < 0 || bind(c2, (struct sockaddr *)&ca, clen) || connect(c2, (struct sockaddr *)&la, llen))
		test_abort("second connection: %s", strerror(errno));
	s2 = accept(l, NULL, NULL);
	lq = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	cq = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (bind(lq, (struct sockaddr *)&qa, qlen) || listen(lq, 1) || connect(cq, (struct sockaddr *)&qa, qlen))
		test_abort("seqpacket: %s", strerror(errno));
	sq = accept(lq, NULL, NULL);
	close(lq);
	c3 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c3, (struct sockaddr *)&la, llen))
		test_abort("third connection: %s", strerror(errno));
	s3 = accept(l, NULL, NULL);
	if (send(s1, "to c1", 5, 0) != 5 || send(s2, "to c2", 5, 0) != 5 || send(c2, "to s2", 5, 0) != 5 ||
	    send(sq, "rec1", 4, 0) != 4 || send(sq, "rec2", 4, 0) != 4 || send(cq, "up", 2, 0) != 2 ||
	    send(c3, "left", 4, 0) != 4)
		test_abort("send: %s", strerror(errno));
	close(c3);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(s2, abstract, 1, MSG_DONTWAIT);
	if (!unix_named(s1, &la, llen, 0) || !unix_named(s2, &la, llen, 0) || !unix_named(s2, &ca, clen, 1) ||
	    !unix_named(c2, &ca, clen, 0) || !unix_named(c2, &la, llen, 1) || !unix_named(sq, &qa, qlen, 0) ||
	    !unix_named(cq, &qa, qlen, 1) || !unix_named(s3, &la, llen, 0))
		fail("an end of an accepted connection has another name or peer name");
	if (!unix_named(c1, &la, llen, 1) || !unix_named(c1, &none, nlen, 0))
		fail("the first client has another name or peer name");
	if (!unix_recv_is(s1, "from c1") || !unix_recv_is(c1, "to c1") || !talks(s1, c1))
		fail("the first connection lost data or no longer works");
	if (!unix_recv_is(s2, "to s2") || !unix_recv_is(c2, "to c2") || !talks(s2, c2))
		fail("the bound client's connection lost data or no longer works");
	if (!unix_recv_is(sq, "up") || !unix_recv_is(cq, "rec1") || !unix_recv_is(cq, "rec2") || !talks(cq, sq))
		fail("the seqpacket connection lost records or no longer works");
	if (!unix_recv_is(s3, "left") || recv(s3, abstract, 1, MSG_DONTWAIT) != 0)
		fail("the connection whose client closed: not its data then EOF");
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	if (getsockopt(s1, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.pid != getpid())
		fail("SO_PEERCRED of an accepted end names pid %d, not its connecting task %d", cr.pid, getpid());
	int c4 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c4, (struct sockaddr *)&la, llen) || fcntl(l, F_SETFL, O_NONBLOCK) || accept(l, NULL, NULL) < 0)
		fail("the listener no longer accepts");
	unlink(lpath);
	unlink(cpath);
	return test_finish();
}
