/*
 * tcp_syn_sent (dumped with --tcp-established): a connect() still in SYN_SENT (its listener's
 * accept queue is full, so its SYN is dropped and retried).  crpy does not restore a connection
 * being made: the dump must refuse in one line naming the state and addresses, and leave the task
 * untouched: an established connection with a message queued, at a lower fd, read in repair mode
 * before the refusal, is given back.  The test then accepts the waiting connection, the retried
 * one completes, and the established one delivers its message and carries new data.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_addr_of(AF_INET, "127.0.0.1", 0, &ss);
	int l1, ec, es, syn, l, first, a;
	struct pollfd p = { .events = POLLOUT };
	char buf[8];

	test_init(argc, argv);
	l1 = socket(AF_INET, SOCK_STREAM, 0);       /* kept: its fd is not reused below */
	if (l1 < 0 || bind(l1, (struct sockaddr *)&ss, len) || listen(l1, 1) || getsockname(l1, (struct sockaddr *)&ss, &len))
		test_abort("listen: %s", strerror(errno));
	ec = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(ec, (struct sockaddr *)&ss, len) || (es = accept(l1, NULL, NULL)) < 0 || send(ec, "queued", 6, 0) != 6)
		test_abort("established pair: %s", strerror(errno));
	syn = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);      /* below the listener: refused first */
	p.fd = syn;
	l = socket(AF_INET, SOCK_STREAM, 0);
	len = inet_addr_of(AF_INET, "127.0.0.1", 0, &ss);
	if (l < 0 || bind(l, (struct sockaddr *)&ss, len) || listen(l, 0) || getsockname(l, (struct sockaddr *)&ss, &len))
		test_abort("listen: %s", strerror(errno));
	first = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(first, (struct sockaddr *)&ss, len))            /* fills the accept queue */
		test_abort("connect: %s", strerror(errno));
	if (connect(syn, (struct sockaddr *)&ss, len) == 0 || errno != EINPROGRESS)
		test_abort("the second connect did not wait: %s", strerror(errno));
	usleep(50000);
	if (inet_tcp_state(syn) != TCP_SYN_SENT)
		test_skip("the second connect is in state %d, not SYN_SENT", inet_tcp_state(syn));
	test_daemon();

	test_waitsig();
	a = zdtm_break ? -2 : accept(l, NULL, NULL);       /* broken: the queue stays full */
	if (a == -1)
		fail("the first connection is lost: %s", strerror(errno));
	if (poll(&p, 1, 10000) != 1 || inet_geti(syn, SOL_SOCKET, SO_ERROR) != 0 || inet_tcp_state(syn) != TCP_ESTABLISHED)
		fail("the connection in SYN_SENT did not complete (state %d)", inet_tcp_state(syn));
	p = (struct pollfd){ .fd = es, .events = POLLIN };
	poll(&p, 1, 5000);
	if (recv(es, buf, sizeof(buf), MSG_DONTWAIT) != 6 || memcmp(buf, "queued", 6))
		fail("the established connection lost its message");
	p.fd = ec;
	if (send(es, "back", 4, 0) != 4 || poll(&p, 1, 5000) != 1 || recv(ec, buf, sizeof(buf), 0) != 4)
		fail("the established connection no longer carries data");
	return test_finish();
}
