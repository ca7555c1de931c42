/*
 * packet_sockets: a SOCK_RAW and a SOCK_DGRAM packet socket bound to lo for ethertype 0x88b5, both
 * in one fanout group (PACKET_FANOUT_HASH, id from the pid), the raw one with TPACKET_V2,
 * PACKET_RESERVE 64, AUXDATA, ORIGDEV, LOSS, PACKET_TIMESTAMP and a multicast address on lo
 * (PACKET_ADD_MEMBERSHIP), and a SOCK_DGRAM one on every interface for ethertype 0x88b6 with
 * PACKET_QDISC_BYPASS.  After restore: names (interface, protocol), every option, the fanout group,
 * the multicast address still on lo (/proc/net/dev_mcast); a 0x88b5 frame sent on lo reaches one
 * member of the group, a 0x88b6 frame the third socket.
 */
#include "lib/zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROTO_A 0x88b5
#define PROTO_B 0x88b6
#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif

static int opt(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	getsockopt(fd, SOL_PACKET, name, &v, &len);
	return v;
}

static int bound(int fd, int ifindex, int proto)
{
	struct sockaddr_ll a;
	socklen_t len = sizeof(a);
	memset(&a, 0, sizeof(a));
	return !getsockname(fd, (struct sockaddr *)&a, &len) && a.sll_ifindex == ifindex && a.sll_protocol == htons(proto);
}

static int mcast_on_lo(void)
{
	static char buf[65536];
	if (read_whole("/proc/net/dev_mcast", buf, sizeof(buf)) < 0)
		return -1;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, " lo ") && strstr(line, "01005e0000fb"))
			return 1;
	return 0;
}

static void frame(int proto)
{
	unsigned char f[60] = {0};
	struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex("lo"), .sll_halen = 6};
	int s = socket(AF_PACKET, SOCK_RAW, 0);
	f[12] = proto >> 8, f[13] = proto & 0xff;
	memcpy(f + 14, "crpy", 4);
	if (s < 0 || sendto(s, f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to)) != sizeof(f))
		fail("cannot send a %#x frame on lo: %s", proto, strerror(errno));
	close(s);
}

static int got(int fd, int timeout)
{
	unsigned char buf[128];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, timeout) != 1)
		return 0;
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	return n > 0 && memmem(buf, n, "crpy", 4) != NULL;
}

int main(int argc, char **argv)
{
	int lo, raw, dgram, every, v2 = TPACKET_V2, reserve = 64, one = 1, tstamp = 1, fanout;
	struct packet_mreq mr = {.mr_type = PACKET_MR_MULTICAST, .mr_alen = 6, .mr_address = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}};
	struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(PROTO_A)};

	test_init(argc, argv);
	lo = (int)if_nametoindex("lo");
	a.sll_ifindex = mr.mr_ifindex = lo;
	fanout = (getpid() & 0xffff) | (PACKET_FANOUT_HASH << 16);
	raw = socket(AF_PACKET, SOCK_RAW, 0);
	dgram = socket(AF_PACKET, SOCK_DGRAM, 0);
	every = socket(AF_PACKET, SOCK_DGRAM, htons(PROTO_B));
	if (raw < 0 || dgram < 0 || every < 0 ||
	    setsockopt(raw, SOL_PACKET, PACKET_VERSION, &v2, sizeof(v2)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof(reserve)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_ORIGDEV, &one, sizeof(one)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_LOSS, &one, sizeof(one)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_TIMESTAMP, &tstamp, sizeof(tstamp)) ||
	    bind(raw, (struct sockaddr *)&a, sizeof(a)) || bind(dgram, (struct sockaddr *)&a, sizeof(a)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) ||
	    setsockopt(raw, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) ||
	    setsockopt(dgram, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) ||
	    setsockopt(every, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)))
		test_abort("packet sockets: %s", strerror(errno));
	if (mcast_on_lo() != 1)
		test_abort("the multicast address is not on lo");
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		int zero = 0;
		setsockopt(raw, SOL_PACKET, PACKET_AUXDATA, &zero, sizeof(zero));
	}
	if (!bound(raw, lo, PROTO_A) || !bound(dgram, lo, PROTO_A) || !bound(every, 0, PROTO_B))
		fail("an interface or protocol changed");
	if (opt(raw, PACKET_VERSION) != TPACKET_V2 || opt(raw, PACKET_RESERVE) != reserve || opt(raw, PACKET_AUXDATA) != 1 ||
	    opt(raw, PACKET_ORIGDEV) != 1 || opt(raw, PACKET_LOSS) != 1 || opt(raw, PACKET_TIMESTAMP) != tstamp)
		fail("the raw socket's options changed: version %d reserve %d auxdata %d origdev %d loss %d timestamp %d",
		     opt(raw, PACKET_VERSION), opt(raw, PACKET_RESERVE), opt(raw, PACKET_AUXDATA), opt(raw, PACKET_ORIGDEV),
		     opt(raw, PACKET_LOSS), opt(raw, PACKET_TIMESTAMP));
	if (opt(dgram, PACKET_VERSION) != TPACKET_V1 || opt(dgram, PACKET_AUXDATA) != 0 || opt(every, PACKET_QDISC_BYPASS) != 1)
		fail("the dgram sockets' options changed");
	if (opt(raw, PACKET_FANOUT) != fanout || opt(dgram, PACKET_FANOUT) != fanout || opt(every, PACKET_FANOUT) != 0)
		fail("fanout: %#x %#x %#x, not %#x %#x 0", opt(raw, PACKET_FANOUT), opt(dgram, PACKET_FANOUT),
		     opt(every, PACKET_FANOUT), fanout, fanout);
	if (mcast_on_lo() != 1)
		fail("the multicast address is no longer on lo");
	frame(PROTO_A);
	if (!got(raw, 2000) && !got(dgram, 100))
		fail("no member of the fanout group got the 0x88b5 frame");
	frame(PROTO_B);
	if (!got(every, 2000))
		fail("the socket on every interface did not get the 0x88b6 frame");
	return test_finish();
}
