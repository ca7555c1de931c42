/*
 * unix_listen: a unix stream socket listening on a path with backlog 17 and a seqpacket socket
 * listening on an abstract name with backlog 3, O_NONBLOCK.  After restore both still listen
 * (SO_ACCEPTCONN) with their backlog: exactly backlog + 1 non-blocking connects succeed before
 * the next one gets EAGAIN; each connection is accepted and carries data both ways.  The stream
 * listener's socket options are as set: SO_REUSEADDR, SO_KEEPALIVE, SO_LINGER, SO_PRIORITY,
 * SO_PASSCRED, SO_SNDBUF (and the lock that setting it took, SO_BUF_LOCK).
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

#define MAXC 64


static void check_listener(int l, int type, struct sockaddr_un *a, socklen_t alen, int backlog, const char *what)
{
	int c[MAXC], n = 0, v;
	socklen_t len = sizeof(v);
	char buf[16];

	if (getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) || !v) {
		fail("%s: no longer listening", what);
		return;
	}
	while (n < MAXC) {
		c[n] = socket(AF_UNIX, type | SOCK_NONBLOCK, 0);
		if (connect(c[n], (struct sockaddr *)a, alen)) {
			if (errno != EAGAIN)
				fail("%s: connect: %s", what, strerror(errno));
			close(c[n]);
			break;
		}
		n++;
	}
	if (n != backlog + 1)
		fail("%s: %d connections waited before EAGAIN, backlog %d lets %d", what, n, backlog, backlog + 1);
	for (int i = 0; i < n; i++) {
		int s = accept(l, NULL, NULL);
		if (s < 0) {
			fail("%s: accept %d: %s", what, i, strerror(errno));
			break;
		}
		if (send(c[i], "hi", 2, 0) != 2 || recv(s, buf, sizeof(buf), 0) != 2 ||
		    send(s, "ho!", 3, 0) != 3 || recv(c[i], buf, sizeof(buf), 0) != 3)
			fail("%s: connection %d carries no data", what, i);
		close(s);
		close(c[i]);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un pa, aa;
	socklen_t plen, alen;
	char abstract[64];
	int ls, lq;

	test_init(argc, argv);
	char *path = test_path(".listen.sock");
	unlink(path);
	snprintf(abstract, sizeof(abstract), "zdtm-unix-listen-%d", getpid());
	plen = unix_addr(&pa, path, 0);
	alen = unix_addr(&aa, abstract, 1);
	ls = socket(AF_UNIX, SOCK_STREAM, 0);
	lq = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
	int one = 1, prio = 3, sndbuf = 65536;
	struct linger lg = { 1, 5 };
	if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(ls, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
	    setsockopt(ls, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) ||
	    setsockopt(ls, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio)) ||
	    setsockopt(ls, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) ||
	    setsockopt(ls, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)))
		test_abort("setsockopt: %s", strerror(errno));
	if (bind(ls, (struct sockaddr *)&pa, plen) || listen(ls, 17) ||
	    bind(lq, (struct sockaddr *)&aa, alen) || listen(lq, 3))
		test_abort("bind/listen: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		listen(lq, 5);
	if (!(fcntl(lq, F_GETFL) & O_NONBLOCK) || (fcntl(ls, F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK differs");
	static const struct { int opt, want; const char *name; } opts[] = {
		{ SO_REUSEADDR, 1, "SO_REUSEADDR" }, { SO_KEEPALIVE, 1, "SO_KEEPALIVE" },
		{ SO_PRIORITY, 3, "SO_PRIORITY" }, { SO_PASSCRED, 1, "SO_PASSCRED" },
		{ SO_SNDBUF, 2 * 65536, "SO_SNDBUF" }, { 72 /* SO_BUF_LOCK */, 1, "SO_BUF_LOCK" },
	};
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		int v = -1;
		socklen_t len = sizeof(v);
		if (getsockopt(ls, SOL_SOCKET, opts[i].opt, &v, &len) || v != opts[i].want)
			fail("%s is %d, was %d", opts[i].name, v, opts[i].want);
	}
	struct linger lg2;
	socklen_t lglen = sizeof(lg2);
	if (getsockopt(ls, SOL_SOCKET, SO_LINGER, &lg2, &lglen) || lg2.l_onoff != 1 || lg2.l_linger != 5)
		fail("SO_LINGER is %d/%d, was 1/5", lg2.l_onoff, lg2.l_linger);
	check_listener(ls, SOCK_STREAM, &pa, plen, 17, "stream on a path");
	check_listener(lq, SOCK_SEQPACKET, &aa, alen, 3, "seqpacket on an abstract name");
	unlink(path);
	return test_finish();
}
