/*
 * unix_bound: named unix sockets: a dgram socket bound to a path (file mode 0640) with three
 * datagrams queued by a dgram socket connected to it, that connected socket, a dgram socket bound
 * to an abstract name with a datagram queued by a socket closed since, a stream socket bound to
 * a path (not listening), an unbound stream and an unbound dgram socket.  After restore each has
 * its name (getsockname), the socket file its mode, the queued datagrams come in order, the
 * connected socket is still connected (getpeername, and its new datagram arrives), and the
 * abstract name can be sent to.
 */
#include "lib/zdtmtst.h"
#include "lib/unixsk.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>




int main(int argc, char **argv)
{
	struct sockaddr_un pa, aa, ba, none;
	socklen_t plen, alen, blen, nlen = sizeof(sa_family_t);
	char abstract[64];
	struct stat st;
	int srv, cli, abs_sk, bs, ub, ud, tmp;

	test_init(argc, argv);
	char *path = test_path(".dgram.sock"), *path2 = test_path(".stream.sock");
	unlink(path);
	unlink(path2);
	snprintf(abstract, sizeof(abstract), "zdtm-unix-bound-%d", getpid());
	plen = unix_addr(&pa, path, 0);
	alen = unix_addr(&aa, abstract, 1);
	blen = unix_addr(&ba, path2, 0);
	memset(&none, 0, sizeof(none));
	none.sun_family = AF_UNIX;

	srv = socket(AF_UNIX, SOCK_DGRAM, 0);
	cli = socket(AF_UNIX, SOCK_DGRAM, 0);
	abs_sk = socket(AF_UNIX, SOCK_DGRAM, 0);
	bs = socket(AF_UNIX, SOCK_STREAM, 0);
	ub = socket(AF_UNIX, SOCK_STREAM, 0);
	ud = socket(AF_UNIX, SOCK_DGRAM, 0);
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(srv, (struct sockaddr *)&pa, plen) || chmod(path, 0640) ||
	    bind(abs_sk, (struct sockaddr *)&aa, alen) || bind(bs, (struct sockaddr *)&ba, blen) ||
	    connect(cli, (struct sockaddr *)&pa, plen))
		test_abort("bind/connect: %s", strerror(errno));
	if (send(cli, "first", 5, 0) != 5 || send(cli, "second", 6, 0) != 6 || send(cli, "third", 5, 0) != 5 ||
	    sendto(tmp, "abstract", 8, 0, (struct sockaddr *)&aa, alen) != 8)
		test_abort("send: %s", strerror(errno));
	close(tmp);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(srv, abstract, 1, MSG_DONTWAIT);
	if (!unix_named(srv, &pa, plen, 0) || !unix_named(abs_sk, &aa, alen, 0) || !unix_named(bs, &ba, blen, 0))
		fail("a bound socket lost its name");
	if (!unix_named(ub, &none, nlen, 0) || !unix_named(ud, &none, nlen, 0) || !unix_named(cli, &none, nlen, 0))
		fail("an unbound socket has a name now");
	if (!unix_named(cli, &pa, plen, 1))
		fail("the connected dgram socket is no longer connected to %s", path);
	if (stat(path, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0640)
		fail("%s is not the socket file with mode 0640 (mode %o)", path, st.st_mode);
	if (!unix_recv_is(srv, "first") || !unix_recv_is(srv, "second") || !unix_recv_is(srv, "third"))
		fail("the bound socket lost its queued datagrams or their order");
	if (!unix_recv_is(abs_sk, "abstract"))
		fail("the abstract socket lost its queued datagram");
	if (send(cli, "again", 5, 0) != 5 || !unix_recv_is(srv, "again"))
		fail("the connected socket no longer reaches the bound one");
	tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sendto(tmp, "new", 3, 0, (struct sockaddr *)&aa, alen) != 3 || !unix_recv_is(abs_sk, "new"))
		fail("the abstract name no longer reaches its socket");
	unlink(path);
	unlink(path2);
	return test_finish();
}
