/*
 * raw_sockets: raw and ICMP "ping" sockets.  A raw ICMP socket bound to 127.0.0.1 and connected to
 * 127.0.0.2 with an ICMP_FILTER that blocks every type and IP_TTL 33, an IPPROTO_RAW socket
 * (IP_HDRINCL), a raw v6 socket of protocol 253 bound to ::1 with IPV6_CHECKSUM at offset 2, a raw
 * ICMPv6 socket with an ICMP6_FILTER blocking every type, and a v4 and a v6 ping socket connected
 * to the loopback (each with its ident, the port of its name).  After restore: names, peers,
 * options and filters as set; the protocol-253 socket still sends and receives its own packets with
 * the checksum filled in; each ping socket gets the echo reply to its request, to its ident.
 * Skipped where ping sockets are off (net.ipv4.ping_group_range).
 */
#include "lib/zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int opt(int fd, int level, int name)
{
	int v = -12345;
	socklen_t len = sizeof(v);
	getsockopt(fd, level, name, &v, &len);
	return v;
}

static int same_name(int fd, const struct sockaddr_storage *ss, socklen_t len)
{
	struct sockaddr_storage now;
	socklen_t l = sizeof(now);
	memset(&now, 0, sizeof(now));
	if (getsockname(fd, (struct sockaddr *)&now, &l))
		return 0;
	return l == len && !memcmp(&now, ss, len);
}

/* an echo request through a ping socket comes back as the reply to its ident */
static void echo(int fd, int v6, const char *what)
{
	unsigned char pkt[16] = {v6 ? 128 : ICMP_ECHO, 0}, buf[64];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	memcpy(pkt + 8, "crpyping", 8);
	pkt[6] = 0, pkt[7] = 5;                              /* sequence 5 */
	if (send(fd, pkt, sizeof(pkt), 0) != sizeof(pkt)) {
		fail("%s: send: %s", what, strerror(errno));
		return;
	}
	if (poll(&p, 1, 2000) != 1) {
		fail("%s: no echo reply", what);
		return;
	}
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != sizeof(pkt) || buf[0] != (v6 ? 129 : ICMP_ECHOREPLY) || buf[7] != 5 || memcmp(buf + 8, "crpyping", 8))
		fail("%s: the reply is not the echo of the request (%zd bytes, type %d)", what, n, n > 0 ? buf[0] : -1);
}

int main(int argc, char **argv)
{
	struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in lo2 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1)};
	struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_storage n_icmp, n_r6, n_ping, n_ping6;
	socklen_t l_icmp, l_r6, l_ping, l_ping6;
	struct icmp_filter all = {~0U}, f4;
	struct icmp6_filter all6, f6;
	int icmp, rawip, r6, i6, ping, ping6, ttl = 33, two = 2;
	socklen_t len;

	test_init(argc, argv);
	ping = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	if (ping < 0 && (errno == EACCES || errno == EPERM))
		test_skip("ping sockets are off: net.ipv4.ping_group_range does not hold our gid");
	ping6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
	icmp = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	rawip = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	r6 = socket(AF_INET6, SOCK_RAW, 253);
	i6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
	if (ping < 0 || ping6 < 0 || icmp < 0 || rawip < 0 || r6 < 0 || i6 < 0)
		test_abort("socket: %s", strerror(errno));
	ICMP6_FILTER_SETBLOCKALL(&all6);
	if (setsockopt(icmp, SOL_RAW, ICMP_FILTER, &all, sizeof(all)) ||
	    setsockopt(icmp, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) ||
	    bind(icmp, (struct sockaddr *)&lo, sizeof(lo)) || connect(icmp, (struct sockaddr *)&lo2, sizeof(lo2)) ||
	    setsockopt(r6, IPPROTO_IPV6, IPV6_CHECKSUM, &two, sizeof(two)) || bind(r6, (struct sockaddr *)&lo6, sizeof(lo6)) ||
	    setsockopt(i6, IPPROTO_ICMPV6, ICMP6_FILTER, &all6, sizeof(all6)) ||
	    connect(ping, (struct sockaddr *)&lo, sizeof(lo)) || connect(ping6, (struct sockaddr *)&lo6, sizeof(lo6)))
		test_abort("setup: %s", strerror(errno));
	l_icmp = l_r6 = l_ping = l_ping6 = sizeof(struct sockaddr_storage);
	memset(&n_icmp, 0, sizeof(n_icmp)), memset(&n_r6, 0, sizeof(n_r6));
	memset(&n_ping, 0, sizeof(n_ping)), memset(&n_ping6, 0, sizeof(n_ping6));
	getsockname(icmp, (struct sockaddr *)&n_icmp, &l_icmp);
	getsockname(r6, (struct sockaddr *)&n_r6, &l_r6);
	echo(ping, 0, "ping before the dump");             /* binds the ident */
	echo(ping6, 1, "ping6 before the dump");
	getsockname(ping, (struct sockaddr *)&n_ping, &l_ping);
	getsockname(ping6, (struct sockaddr *)&n_ping6, &l_ping6);
	if (test_failed())
		test_abort("ping does not work here");
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		struct icmp_filter none = {0};
		setsockopt(icmp, SOL_RAW, ICMP_FILTER, &none, sizeof(none));
	}
	if (!same_name(icmp, &n_icmp, l_icmp))
		fail("the raw ICMP socket's name changed");
	/* raw and ping sockets answer ENOTCONN to getpeername even when connected: send() tells */
	if (send(icmp, "\x08\0\0\0\0\0\0\0", 8, 0) != 8)
		fail("the raw ICMP socket is no longer connected: %s", strerror(errno));
	len = sizeof(f4);
	if (getsockopt(icmp, SOL_RAW, ICMP_FILTER, &f4, &len) || f4.data != ~0U)
		fail("the ICMP_FILTER is %#x, not all blocked", f4.data);
	if (opt(icmp, IPPROTO_IP, IP_TTL) != ttl)
		fail("IP_TTL is %d, not %d", opt(icmp, IPPROTO_IP, IP_TTL), ttl);
	if (opt(rawip, IPPROTO_IP, IP_HDRINCL) != 1 || opt(rawip, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_RAW)
		fail("the IPPROTO_RAW socket lost IP_HDRINCL or its protocol");
	if (!same_name(r6, &n_r6, l_r6) || opt(r6, IPPROTO_IPV6, IPV6_CHECKSUM) != 2 || opt(r6, SOL_SOCKET, SO_PROTOCOL) != 253)
		fail("the raw v6 socket's name, protocol or IPV6_CHECKSUM changed");
	len = sizeof(f6);
	if (getsockopt(i6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, &len) || memcmp(&f6, &all6, sizeof(f6)))
		fail("the ICMP6_FILTER changed");
	if (!same_name(ping, &n_ping, l_ping) || !same_name(ping6, &n_ping6, l_ping6))
		fail("a ping socket's ident changed");
	{
		unsigned char out[8] = {1, 2, 0, 0, 5, 6, 7, 8}, in[64];
		struct pollfd p = {.fd = r6, .events = POLLIN};
		if (sendto(r6, out, sizeof(out), 0, (struct sockaddr *)&lo6, sizeof(lo6)) != sizeof(out))
			fail("the raw v6 socket cannot send: %s", strerror(errno));
		else if (poll(&p, 1, 2000) != 1 || recv(r6, in, sizeof(in), MSG_DONTWAIT) != sizeof(out) ||
			 memcmp(in + 4, out + 4, 4) || (!in[2] && !in[3]))
			fail("the raw v6 socket did not get its packet back with a checksum");
	}
	echo(ping, 0, "ping");
	echo(ping6, 1, "ping6");
	return test_finish();
}
