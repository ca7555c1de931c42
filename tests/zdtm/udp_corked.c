/*
 * udp_corked: a UDP socket with UDP_CORK set and 100 bytes sent but held back by the cork.  crpy
 * cannot cork them again: the dump must refuse in one line naming the socket and leave the task
 * untouched (desc.py dump_fails).  The check: uncorking sends the 100 bytes as one datagram.
 */
#include "lib/zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	char data[100], buf[200];
	int a, b, one = 1, zero = 0;

	test_init(argc, argv);
	fill_pattern(data, sizeof(data), 7);
	a = socket(AF_INET, SOCK_DGRAM, 0);
	b = socket(AF_INET, SOCK_DGRAM, 0);
	if (a < 0 || b < 0 || bind(b, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(b, (struct sockaddr *)&sa, &len) ||
	    connect(a, (struct sockaddr *)&sa, len) || setsockopt(a, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)) ||
	    send(a, data, 60, 0) != 60 || send(a, data + 60, 40, 0) != 40)
		test_abort("socket: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		send(a, "x", 1, 0);
	setsockopt(a, IPPROTO_UDP, UDP_CORK, &zero, sizeof(zero));
	struct pollfd p = {.fd = b, .events = POLLIN};
	ssize_t n = poll(&p, 1, 2000) == 1 ? recv(b, buf, sizeof(buf), MSG_DONTWAIT) : -1;
	if (n != 100 || check_pattern(buf, 100, 7) != -1)
		fail("uncorking sent %zd bytes, not the 100 corked", n);
	return test_finish();
}
