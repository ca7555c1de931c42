/*
 * tcp_backlog: a TCP listener with two connections waiting in its backlog, not accepted (their
 * clients in the test too).  A connection not yet accepted has no fd to hang it on: the dump must
 * refuse in one line naming the listener and the two connections (crpy restores no backlog; criu's
 * --skip-in-flight would drop them), and leave the task untouched.  The test then accepts both,
 * and each carries the message its client queued.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_addr_of(AF_INET6, "::1", 0, &ss);
	int l = socket(AF_INET6, SOCK_STREAM, 0), c[2], i;
	char buf[16];

	test_init(argc, argv);
	if (l < 0 || bind(l, (struct sockaddr *)&ss, len) || listen(l, 4) || getsockname(l, (struct sockaddr *)&ss, &len))
		test_abort("listen: %s", strerror(errno));
	for (i = 0; i < 2; i++) {
		c[i] = socket(AF_INET6, SOCK_STREAM, 0);
		if (c[i] < 0 || connect(c[i], (struct sockaddr *)&ss, len) || send(c[i], i ? "second" : "first", i ? 6 : 5, 0) < 0)
			test_abort("connect: %s", strerror(errno));
	}
	test_daemon();

	test_waitsig();
	fcntl(l, F_SETFL, O_NONBLOCK);               /* a connection gone must not hang the check */
	if (zdtm_break)
		close(accept(l, NULL, NULL));
	for (i = 0; i < 2; i++) {
		struct pollfd p = { .fd = l, .events = POLLIN };
		int s;

		poll(&p, 1, 1000);
		s = accept(l, NULL, NULL);
		p.fd = s;
		poll(&p, 1, 1000);
		if (s < 0 || recv(s, buf, sizeof(buf), MSG_DONTWAIT) != (i ? 6 : 5) || memcmp(buf, i ? "second" : "first", i ? 6 : 5))
			fail("waiting connection %d lost (accept %d: %s)", i, s, strerror(errno));
	}
	return test_finish();
}
