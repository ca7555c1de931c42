/*
 * unix_shutdown: shutdown states of unix sockets: a stream pair shut for writing on one side
 * after queueing "bye" (the other side reads it then end of file, and can still send back), a
 * seqpacket pair shut for reading on one side with a record queued, a stream pair shut both ways, a dgram pair shut
 * for writing, and a stream pair whose other end was closed with "left over" still queued.
 * After restore every send and receive on them behaves as before the dump: data, end of file,
 * EPIPE, in the same places.
 */
#include "lib/zdtmtst.h"
#include "lib/unixsk.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


static int at_eof(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static int send_fails(int fd)
{
	return send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == -1 && errno == EPIPE;
}

int main(int argc, char **argv)
{
	int wr[2], rd[2], both[2], dg[2], gone[2];
	char c;

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, wr) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, rd) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, both) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, gone))
		test_abort("socketpair: %s", strerror(errno));
	if (send(wr[0], "bye", 3, 0) != 3 || shutdown(wr[0], SHUT_WR) || send(rd[0], "queued", 6, 0) != 6 || shutdown(rd[1], SHUT_RD) ||
	    shutdown(both[0], SHUT_RDWR) || shutdown(dg[0], SHUT_WR) || send(gone[0], "left over", 9, 0) != 9)
		test_abort("send/shutdown: %s", strerror(errno));
	close(gone[0]);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(gone[1], &c, 1, MSG_DONTWAIT);
	if (!unix_recv_is(wr[1], "bye") || !at_eof(wr[1]) || !send_fails(wr[0]))
		fail("stream shut for writing: not 'bye' then EOF, or its writer still sends");
	if (send(wr[1], "back", 4, 0) != 4 || !unix_recv_is(wr[0], "back"))
		fail("stream shut for writing: the other way no longer works");
	if (!unix_recv_is(rd[1], "queued") || !at_eof(rd[1]) || !send_fails(rd[0]))
		fail("seqpacket shut for reading: not its queued record then EOF, or its peer still sends");
	if (send(rd[1], "up", 2, 0) != 2 || !unix_recv_is(rd[0], "up"))
		fail("seqpacket shut for reading: the other way no longer works");
	if (!at_eof(both[0]) || !at_eof(both[1]) || !send_fails(both[0]) || !send_fails(both[1]))
		fail("stream shut both ways: still carries data");
	if (!send_fails(dg[0]) || send(dg[1], "dg", 2, 0) != 2 || !unix_recv_is(dg[0], "dg"))
		fail("dgram shut for writing: wrong way round");
	if (!unix_recv_is(gone[1], "left over") || !at_eof(gone[1]) || !send_fails(gone[1]))
		fail("stream whose peer closed: not 'left over' then EOF and EPIPE");
	return test_finish();
}
