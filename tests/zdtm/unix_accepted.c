/*
 * unix_accepted: connections accepted from unix listeners, with data queued both ways:
 *  - a stream listener on a path, and a connection to it from a child process (client in
 *    another task of the tree), accepted by the parent;
 *  - a second connection to it from a client bound to a path of its own first;
 *  - a seqpacket listener on an abstract name, closed after accepting its one connection;
 *  - an accepted stream connection whose client closed with data left to read.
 * After restore every end has its name and its peer's (getsockname/getpeername), reads exactly
 * what was queued for it, the connections carry new data both ways, the child's too, and the
 * path listener still accepts new connections.
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
#include <sys/wait.h>
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
	int l, s1, s2, c2, lq, sq, cq, s3, c3, status;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
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
	kid = test_fork();
	if (kid == 0) {
		int c1 = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c1, (struct sockaddr *)&la, llen) || send(c1, "from child", 10, 0) != 10)
			_exit(1);
		kill(getppid(), SIGUSR1);
		test_usr1_wait();
		if (!unix_named(c1, &la, llen, 1) || !unix_named(c1, &none, nlen, 0) || !unix_recv_is(c1, "to child"))
			_exit(2);
		_exit(send(c1, "bye", 3, 0) == 3 ? 0 : 3);
	}
	test_usr1_wait();
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
	if (send(s1, "to child", 8, 0) != 8 || send(s2, "to c2", 5, 0) != 5 || send(c2, "to s2", 5, 0) != 5 ||
	    send(sq, "rec1", 4, 0) != 4 || send(sq, "rec2", 4, 0) != 4 || send(cq, "up", 2, 0) != 2 ||
	    send(c3, "left", 4, 0) != 4)
		test_abort("send: %s", strerror(errno));
	close(c3);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(s2, abstract, 1, MSG_DONTWAIT);
	if (!unix_named(s1, &la, llen, 0) || !unix_named(s2, &la, llen, 0) || !unix_named(s2, &ca, clen, 1) ||
	    !unix_named(c2, &ca, clen, 0) || !unix_named(c2, &la, llen, 1) || !unix_named(sq, &qa, qlen, 0) ||
	    !unix_named(cq, &qa, qlen, 1) || !unix_named(s3, &la, llen, 0))
		fail("an end of an accepted connection has another name or peer name");
	if (!unix_recv_is(s1, "from child"))
		fail("the child's queued data is lost");
	if (!unix_recv_is(s2, "to s2") || !unix_recv_is(c2, "to c2") || !talks(s2, c2))
		fail("the bound client's connection lost data or no longer works");
	if (!unix_recv_is(sq, "up") || !unix_recv_is(cq, "rec1") || !unix_recv_is(cq, "rec2") || !talks(cq, sq))
		fail("the seqpacket connection lost records or no longer works");
	if (!unix_recv_is(s3, "left") || recv(s3, abstract, 1, MSG_DONTWAIT) != 0)
		fail("the connection whose client closed: not its data then EOF");
	kill(kid, SIGUSR1);
	if (waitpid(kid, &status, 0) != kid || status)
		fail("child ended with status 0x%x", status);
	if (!unix_recv_is(s1, "bye") && (usleep(100000), !unix_recv_is(s1, "bye")))
		fail("the child's message after restore did not come");
	int c4 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c4, (struct sockaddr *)&la, llen) || fcntl(l, F_SETFL, O_NONBLOCK) || accept(l, NULL, NULL) < 0)
		fail("the listener no longer accepts");
	unlink(lpath);
	unlink(cpath);
	return test_finish();
}
