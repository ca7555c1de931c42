/*
 * udp_queued: a UDP-Lite pair with a datagram waiting to be read.  crpy queues again only plain UDP
 * datagrams (crpy.resources.udp_queue): the dump must refuse in one line naming the socket and
 * leave the task untouched (desc.py dump_fails).  The check: the datagram is still queued, whole,
 * and is the only one.
 */
#include "lib/zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	char buf[64];
	int a, b;

	test_init(argc, argv);
	a = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
	b = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
	if (a < 0 || b < 0 || bind(b, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(b, (struct sockaddr *)&sa, &len) ||
	    connect(a, (struct sockaddr *)&sa, len) || send(a, "queued", 6, 0) != 6)
		test_abort("socket: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(b, buf, sizeof(buf), MSG_DONTWAIT);
	if (recv(b, buf, sizeof(buf), MSG_DONTWAIT) != 6 || memcmp(buf, "queued", 6))
		fail("the queued datagram is gone or changed");
	if (recv(b, buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("more than one datagram was queued");
	return test_finish();
}
