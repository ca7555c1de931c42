/*
 * unix_bound_deleted: unix sockets bound to paths whose files were removed since: a dgram socket
 * with datagrams queued by a socket connected to it before the removal, and a stream listener
 * with a connection accepted before its file was removed.  After restore the names are still
 * there (getsockname) but not the files, the queued datagrams come in order, the connected
 * socket still reaches the bound one, the listener still listens and the accepted connection
 * carries data both ways.
 */
#include "lib/zdtmtst.h"
#include "lib/unixsk.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un da, la;
	socklen_t dlen, llen;
	struct stat st;
	int srv, cli, l, c, s, v;
	socklen_t len = sizeof(v);

	test_init(argc, argv);
	char *dpath = test_path(".dgram.sock"), *lpath = test_path(".listen.sock");
	unlink(dpath);
	unlink(lpath);
	dlen = unix_addr(&da, dpath, 0);
	llen = unix_addr(&la, lpath, 0);
	srv = socket(AF_UNIX, SOCK_DGRAM, 0);
	cli = socket(AF_UNIX, SOCK_DGRAM, 0);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(srv, (struct sockaddr *)&da, dlen) || connect(cli, (struct sockaddr *)&da, dlen) ||
	    bind(l, (struct sockaddr *)&la, llen) || listen(l, 4) || connect(c, (struct sockaddr *)&la, llen))
		test_abort("bind/connect: %s", strerror(errno));
	s = accept(l, NULL, NULL);
	if (s < 0 || send(cli, "one", 3, 0) != 3 || send(cli, "two", 3, 0) != 3 || send(c, "up", 2, 0) != 2)
		test_abort("accept/send: %s", strerror(errno));
	if (unlink(dpath) || unlink(lpath))
		test_abort("unlink: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(srv, &v, 1, MSG_DONTWAIT);
	if (!unix_named(srv, &da, dlen, 0) || !unix_named(l, &la, llen, 0) || !unix_named(s, &la, llen, 0))
		fail("a socket bound to a removed file lost its name");
	if (stat(dpath, &st) == 0 || stat(lpath, &st) == 0)
		fail("a removed socket file is back");
	if (!unix_recv_is(srv, "one") || !unix_recv_is(srv, "two"))
		fail("the queued datagrams are lost or out of order");
	if (send(cli, "three", 5, 0) != 5 || !unix_recv_is(srv, "three"))
		fail("the connected socket no longer reaches the bound one");
	if (getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) || !v)
		fail("the listener no longer listens");
	if (!unix_recv_is(s, "up") || send(s, "down", 4, 0) != 4 || !unix_recv_is(c, "down"))
		fail("the accepted connection lost data or no longer works");
	return test_finish();
}
