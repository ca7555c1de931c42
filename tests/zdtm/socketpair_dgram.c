/*
 * socketpair_dgram: a unix dgram socketpair and a seqpacket socketpair, each with messages of
 * different sizes queued both ways (a 0-byte datagram among them, a 60 KiB one).  After restore
 * every message comes back in order with its own boundary (its length), then nothing more, and
 * both pairs still carry new messages both ways.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const size_t sizes[] = { 1, 0, 777, 60000, 13, 4096 };
#define NMSG (sizeof(sizes) / sizeof(sizes[0]))

static unsigned char pattern[60000], buf[70000];

static void queue(int fd, int skip_empty, uint64_t seed)
{
	fill_pattern(pattern, sizeof(pattern), seed);
	for (size_t i = 0; i < NMSG; i++) {
		if (skip_empty && !sizes[i])
			continue;
		if (send(fd, pattern, sizes[i], 0) != (ssize_t)sizes[i])
			test_abort("send %zu: %s", sizes[i], strerror(errno));
	}
}

static void check(int fd, int skip_empty, uint64_t seed, const char *what)
{
	fill_pattern(pattern, sizeof(pattern), seed);
	for (size_t i = 0; i < NMSG; i++) {
		if (skip_empty && !sizes[i])
			continue;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n != (ssize_t)sizes[i] || memcmp(buf, pattern, sizes[i])) {
			fail("%s: message %zu is %zd bytes (or differs), was %zu", what, i, n, sizes[i]);
			return;
		}
	}
	if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("%s: more messages than were queued", what);
}

static void check_alive(int a, int b, const char *what)
{
	if (send(a, "ping", 4, 0) != 4 || recv(b, buf, sizeof(buf), MSG_DONTWAIT) != 4 ||
	    send(b, "pong!", 5, 0) != 5 || recv(a, buf, sizeof(buf), MSG_DONTWAIT) != 5)
		fail("%s: the pair no longer carries messages", what);
}

int main(int argc, char **argv)
{
	int d[2], q[2];

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q))
		test_abort("socketpair: %s", strerror(errno));
	queue(d[0], 0, 1);
	queue(d[1], 0, 2);
	queue(q[0], 1, 3);      /* a 0-byte seqpacket record reads as end of file: none */
	queue(q[1], 1, 4);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(q[1], buf, sizeof(buf), MSG_DONTWAIT);
	check(d[1], 0, 1, "dgram, one way");
	check(d[0], 0, 2, "dgram, other way");
	check(q[1], 1, 3, "seqpacket, one way");
	check(q[0], 1, 4, "seqpacket, other way");
	check_alive(d[0], d[1], "dgram");
	check_alive(q[0], q[1], "seqpacket");
	return test_finish();
}
