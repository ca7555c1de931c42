/*
 * socketpair_stream: a unix stream socketpair with data queued both ways (100 KiB written in
 * pieces one way, 3000 bytes the other), one end O_NONBLOCK with a raised SO_RCVBUF and a receive
 * timeout, the other with SO_PEEK_OFF set.  After restore each end reads exactly its queued bytes
 * in order and no more, the options are as set, and the pair still carries new data both ways.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ONE (100 << 10)
#define TWO 3000

static unsigned char a2b[ONE], b2a[TWO], buf[ONE + 1];

int main(int argc, char **argv)
{
	int sv[2], v;
	socklen_t len = sizeof(v);
	struct timeval tv = { 7, 250000 }, tv_before, tv2;
	int rcvbuf_before;

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		test_abort("socketpair: %s", strerror(errno));
	v = 400000;
	if (setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) ||
	    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    fcntl(sv[1], F_SETFL, O_NONBLOCK))
		test_abort("setsockopt: %s", strerror(errno));
	v = 0;
	if (setsockopt(sv[0], SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v)))
		test_abort("SO_PEEK_OFF: %s", strerror(errno));
	len = sizeof(rcvbuf_before);
	getsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf_before, &len);
	len = sizeof(tv_before);        /* the kernel keeps jiffies: 7.25 s may read back as 7.252 */
	getsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv_before, &len);
	fill_pattern(a2b, sizeof(a2b), 0x5151);
	fill_pattern(b2a, sizeof(b2a), 0x1515);
	for (size_t off = 0; off < ONE; off += 4096)
		if (write(sv[0], a2b + off, ONE - off < 4096 ? ONE - off : 4096) <= 0)
			test_abort("write: %s", strerror(errno));
	if (write(sv[1], b2a, TWO) != TWO)
		test_abort("write back: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(sv[1], buf, 1, MSG_DONTWAIT);
	if ((fcntl(sv[1], F_GETFL) & O_NONBLOCK) == 0 || (fcntl(sv[0], F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK differs");
	len = sizeof(v);
	if (getsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &v, &len) || v != rcvbuf_before)
		fail("SO_RCVBUF is %d, was %d", v, rcvbuf_before);
	len = sizeof(tv2);
	if (getsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv2, &len) || tv2.tv_sec != tv_before.tv_sec ||
	    tv2.tv_usec != tv_before.tv_usec)
		fail("SO_RCVTIMEO is %ld.%06ld", (long)tv2.tv_sec, (long)tv2.tv_usec);
	len = sizeof(v);
	if (getsockopt(sv[0], SOL_SOCKET, SO_PEEK_OFF, &v, &len) || v != 0)
		fail("SO_PEEK_OFF is %d, was 0", v);
	v = -1;
	setsockopt(sv[0], SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v));
	size_t got = recv_full(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
	if (got != ONE || memcmp(buf, a2b, ONE))
		fail("one way: read %zu of %d queued bytes, or they differ", got, ONE);
	got = recv_full(sv[0], buf, sizeof(buf), MSG_DONTWAIT);
	if (got != TWO || memcmp(buf, b2a, TWO))
		fail("other way: read %zu of %d queued bytes, or they differ", got, TWO);
	if (write(sv[0], "ping", 4) != 4 || recv_full(sv[1], buf, 10, MSG_DONTWAIT) != 4 || memcmp(buf, "ping", 4))
		fail("the pair no longer carries data one way");
	if (write(sv[1], "pong", 4) != 4 || recv_full(sv[0], buf, 10, MSG_DONTWAIT) != 4 || memcmp(buf, "pong", 4))
		fail("the pair no longer carries data the other way");
	return test_finish();
}
