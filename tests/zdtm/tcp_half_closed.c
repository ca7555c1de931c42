/*
 * tcp_half_closed (dumped with --tcp-established): an established loopback connection with a
 * message queued, beside a connection whose client shut down its sending side (the client in
 * FIN_WAIT2, the server in CLOSE_WAIT).  crpy does not restore half-closed connections: the dump
 * must refuse in one line naming the state and the addresses, and leave the task untouched (the
 * established connection put in repair mode for the dump is given back).  The test then checks:
 * the established connection delivers its message and carries new data, the half-closed one
 * reads end-of-file on the server and still carries data from server to client.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void tcp_pair(int *client, int *server)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_addr_of(AF_INET, "127.0.0.1", 0, &ss);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&ss, len) || listen(l, 1) || getsockname(l, (struct sockaddr *)&ss, &len))
		test_abort("listen: %s", strerror(errno));
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&ss, len))
		test_abort("connect: %s", strerror(errno));
	*server = accept(l, NULL, NULL);
	if (*server < 0)
		test_abort("accept: %s", strerror(errno));
	close(l);
}

static ssize_t recv_wait(int fd, char *buf, size_t size)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	poll(&p, 1, 5000);
	return recv(fd, buf, size, MSG_DONTWAIT);
}

int main(int argc, char **argv)
{
	int ec, es, hc, hs;
	char buf[16];

	test_init(argc, argv);
	tcp_pair(&ec, &es);
	tcp_pair(&hc, &hs);
	if (send(ec, "queued", 6, 0) != 6 || shutdown(hc, SHUT_WR))
		test_abort("send/shutdown: %s", strerror(errno));
	usleep(100000);                          /* the FIN is acknowledged: FIN_WAIT2 / CLOSE_WAIT */
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(es, buf, 1, MSG_DONTWAIT);
	if (recv_wait(es, buf, sizeof(buf)) != 6 || memcmp(buf, "queued", 6))
		fail("the established connection lost its queued message");
	if (send(es, "back", 4, 0) != 4 || recv_wait(ec, buf, sizeof(buf)) != 4 || memcmp(buf, "back", 4))
		fail("the established connection no longer carries data");
	if (recv_wait(hs, buf, sizeof(buf)) != 0)
		fail("the server of the half-closed connection does not read end-of-file");
	if (send(hs, "still", 5, 0) != 5 || recv_wait(hc, buf, sizeof(buf)) != 5 || memcmp(buf, "still", 5))
		fail("the half-closed connection no longer carries data to its client");
	return test_finish();
}
