/*
 * tcp_half_closed (dumped with --tcp-established): connections of the task in half-closed states.
 *   E: established, a message queued (beside the others, untouched by their FINs).
 *   H: the client sent "last words" and shut down its sending side: the client in FIN_WAIT2, the
 *      server in CLOSE_WAIT with the words still to read before end-of-file.
 *   F: 64 KiB buffers; the client wrote until EAGAIN, then shut down: its FIN waits behind bytes
 *      the full window kept it from sending (FIN_WAIT1), the server's receive queue is full.
 * After restore: H's server reads the words, then end-of-file, and still sends to its client,
 * which reads end-of-file once the server closes; F's server reads every byte once, in order,
 * then end-of-file, and its reply reaches the client; the clients cannot send any more (EPIPE).
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t recv_wait(int fd, void *buf, size_t size)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	poll(&p, 1, 5000);
	return recv(fd, buf, size, MSG_DONTWAIT);
}

int main(int argc, char **argv)
{
	int ec, es, hc, hs, fc, fs;
	unsigned long c2s, got = 0;
	unsigned char buf[8192];

	test_init(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	inet_tcp_pair(0, &ec, &es);
	inet_tcp_pair(0, &hc, &hs);
	inet_tcp_pair(65536, &fc, &fs);
	c2s = inet_fill(fc, 3);
	if (send(ec, "queued", 6, 0) != 6 || send(hc, "last words", 10, 0) != 10 || shutdown(hc, SHUT_WR) ||
	    shutdown(fc, SHUT_WR))
		test_abort("send/shutdown: %s", strerror(errno));
	usleep(100000);                          /* H's FIN is acknowledged */
	if (inet_tcp_state(hc) != TCP_FIN_WAIT2 || inet_tcp_state(hs) != TCP_CLOSE_WAIT ||
	    inet_tcp_state(fc) != TCP_FIN_WAIT1)
		test_abort("states %d %d %d, not FIN_WAIT2 CLOSE_WAIT FIN_WAIT1", inet_tcp_state(hc),
			   inet_tcp_state(hs), inet_tcp_state(fc));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(hs, buf, 1, MSG_DONTWAIT);
	if (inet_tcp_state(hc) != TCP_FIN_WAIT2 || inet_tcp_state(hs) != TCP_CLOSE_WAIT ||
	    inet_tcp_state(fc) != TCP_FIN_WAIT1)
		fail("states %d %d %d after restore, not FIN_WAIT2 CLOSE_WAIT FIN_WAIT1", inet_tcp_state(hc),
		     inet_tcp_state(hs), inet_tcp_state(fc));
	if (recv_wait(es, buf, sizeof(buf)) != 6 || memcmp(buf, "queued", 6))
		fail("E lost its queued message");
	if (send(es, "back", 4, 0) != 4 || recv_wait(ec, buf, sizeof(buf)) != 4 || memcmp(buf, "back", 4))
		fail("E no longer carries data");
	if (recv_wait(hs, buf, sizeof(buf)) != 10 || memcmp(buf, "last words", 10))
		fail("H's server lost the last words");
	else if (recv_wait(hs, buf, sizeof(buf)) != 0)
		fail("H's server does not read end-of-file after them");
	if (send(hs, "still", 5, 0) != 5 || recv_wait(hc, buf, sizeof(buf)) != 5 || memcmp(buf, "still", 5))
		fail("H no longer carries data to its client");
	if (send(hc, "x", 1, 0) != -1 || errno != EPIPE)
		fail("H's client can send after its shutdown");
	close(hs);
	if (recv_wait(hc, buf, sizeof(buf)) != 0)
		fail("H's client does not read end-of-file once the server closed");
	while (got < c2s) {
		ssize_t n = recv_wait(fs, buf, sizeof(buf));

		if (n <= 0) {
			fail("F's server read %zd after %lu of %lu bytes", n, got, c2s);
			break;
		}
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] != inet_pattern(got + k, 3)) {
				fail("F: byte %lu differs", got + k);
				got = c2s + 1;
				break;
			}
		got += n;
	}
	if (got == c2s && recv_wait(fs, buf, sizeof(buf)) != 0)
		fail("F's server does not read end-of-file after the data");
	if (send(fs, "reply", 5, 0) != 5 || recv_wait(fc, buf, sizeof(buf)) != 5 || memcmp(buf, "reply", 5))
		fail("F's reply does not reach its client");
	return test_finish();
}
