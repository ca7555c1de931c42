/*
 * unix_backlog: a unix stream socket listening on an abstract name with two connections waiting
 * in its backlog, not yet accepted (their client ends held by the test).  crpy does not restore
 * connections waiting to be accepted yet, so the dump must refuse in one line naming the fd and
 * the task stay untouched (tests/zdtm/desc.py: dump_fails); then both connections are accepted
 * and carry their queued data.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	socklen_t alen;
	int l, c[2];
	char buf[16];

	test_init(argc, argv);
	snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "zdtm-unix-backlog-%d", getpid());
	alen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(l, (struct sockaddr *)&a, alen) || listen(l, 5))
		test_abort("bind/listen: %s", strerror(errno));
	for (int i = 0; i < 2; i++) {
		c[i] = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c[i], (struct sockaddr *)&a, alen) || send(c[i], i ? "two" : "one", 3, 0) != 3)
			test_abort("connect: %s", strerror(errno));
	}
	test_daemon();

	test_waitsig();
	fcntl(l, F_SETFL, O_NONBLOCK);          /* a lost connection fails, never waits */
	if (zdtm_break)
		close(accept(l, NULL, NULL));
	for (int i = 0; i < 2; i++) {
		int s = accept(l, NULL, NULL);
		if (s < 0 || recv(s, buf, sizeof(buf), MSG_DONTWAIT) != 3 || memcmp(buf, i ? "two" : "one", 3))
			fail("waiting connection %d lost (or lost its data)", i);
		close(s);
	}
	return test_finish();
}
