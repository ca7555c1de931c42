/*
 * netlink_sockets: a NETLINK_ROUTE socket autobound (its port id is the task's pid) in groups 18,
 * 32 and 33 (the last two past the 32 that bind() can name) with NETLINK_EXT_ACK and
 * NETLINK_GET_STRICT_CHK set, and a NETLINK_USERSOCK pair: one bound to a port id of its own
 * choosing, the other connected to it.  After restore: port ids, groups (NETLINK_LIST_MEMBERSHIPS)
 * and options as they were, the route socket still gets the kernel's answer to a request, and a
 * message from the connected socket reaches the bound one from the right port id.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

static unsigned portid(int fd)
{
	struct sockaddr_nl a;
	socklen_t len = sizeof(a);
	memset(&a, 0, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	return a.nl_pid;
}

static int opt(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	getsockopt(fd, SOL_NETLINK, name, &v, &len);
	return v;
}

static int member(int fd, int group)
{
	uint32_t map[8] = {0};
	socklen_t len = sizeof(map);
	if (getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, map, &len))
		return -1;
	return !!(map[(group - 1) / 32] & (1U << ((group - 1) % 32)));
}

int main(int argc, char **argv)
{
	struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = 1U << (18 - 1)};
	int rt, u1, u2, one = 1, g32 = 32, g33 = 33;
	unsigned u1_port, u2_port;

	test_init(argc, argv);
	rt = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (rt < 0 || bind(rt, (struct sockaddr *)&a, sizeof(a)) ||
	    setsockopt(rt, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g32, sizeof(g32)) ||
	    setsockopt(rt, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g33, sizeof(g33)) ||
	    setsockopt(rt, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one)) ||
	    setsockopt(rt, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one)))
		test_abort("route socket: %s", strerror(errno));
	if (portid(rt) != (unsigned)getpid())
		test_abort("the first autobound port id is %u, not the pid", portid(rt));
	u1 = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_USERSOCK);
	u2 = socket(AF_NETLINK, SOCK_RAW, NETLINK_USERSOCK);
	a.nl_groups = 0;
	a.nl_pid = u1_port = 0x40000000u | (unsigned)getpid();
	if (u1 < 0 || u2 < 0 || bind(u1, (struct sockaddr *)&a, sizeof(a)) || connect(u2, (struct sockaddr *)&a, sizeof(a)))
		test_abort("usersock pair: %s", strerror(errno));
	u2_port = portid(u2);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		setsockopt(rt, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &g33, sizeof(g33));
	if (portid(rt) != (unsigned)getpid() || portid(u1) != u1_port || portid(u2) != u2_port)
		fail("port ids changed: %u %u %u, not %u %u %u", portid(rt), portid(u1), portid(u2), (unsigned)getpid(), u1_port, u2_port);
	if (member(rt, 18) != 1 || member(rt, 32) != 1 || member(rt, 33) != 1 || member(rt, 1) != 0)
		fail("groups changed: 18:%d 32:%d 33:%d 1:%d", member(rt, 18), member(rt, 32), member(rt, 33), member(rt, 1));
	if (opt(rt, NETLINK_EXT_ACK) != 1 || opt(rt, NETLINK_GET_STRICT_CHK) != 1 || opt(rt, NETLINK_PKTINFO) != 0)
		fail("SOL_NETLINK options changed");
	{
		struct {
			struct nlmsghdr h;
			struct ifinfomsg i;
		} req = {.h = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 7},
			 .i = {.ifi_family = AF_UNSPEC, .ifi_index = 1}};
		char buf[8192];
		struct pollfd p = {.fd = rt, .events = POLLIN};
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		if (send(rt, &req, sizeof(req), 0) != sizeof(req) || poll(&p, 1, 2000) != 1 ||
		    recv(rt, buf, sizeof(buf), MSG_DONTWAIT) < (ssize_t)sizeof(*h) || h->nlmsg_seq != 7 ||
		    h->nlmsg_type != RTM_NEWLINK || h->nlmsg_pid != (unsigned)getpid())
			fail("the route socket got no answer to RTM_GETLINK for ifindex 1");
	}
	{
		char msg[NLMSG_SPACE(5)], buf[64];
		struct nlmsghdr *h = (struct nlmsghdr *)msg;
		struct sockaddr_nl from;
		socklen_t len = sizeof(from);
		struct pollfd p = {.fd = u1, .events = POLLIN};
		memset(msg, 0, sizeof(msg));
		h->nlmsg_len = NLMSG_LENGTH(5), h->nlmsg_type = NLMSG_MIN_TYPE;
		memcpy(NLMSG_DATA(h), "hello", 5);
		if (send(u2, msg, h->nlmsg_len, 0) != (ssize_t)h->nlmsg_len || poll(&p, 1, 2000) != 1 ||
		    recvfrom(u1, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &len) != (ssize_t)NLMSG_LENGTH(5) ||
		    memcmp(NLMSG_DATA((struct nlmsghdr *)buf), "hello", 5) || from.nl_pid != u2_port)
			fail("the connected usersock socket's message did not reach the bound one");
	}
	return test_finish();
}
