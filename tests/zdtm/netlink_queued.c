/*
 * netlink_queued: a NETLINK_ROUTE socket with the kernel's reply to RTM_GETLINK not yet read.
 * crpy cannot make the kernel send it again: the dump must refuse in one line naming the socket and
 * leave the task untouched (desc.py dump_fails).  The check: the reply is still there to read.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = {.h = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 9},
		 .i = {.ifi_family = AF_UNSPEC, .ifi_index = 1}};
	struct pollfd p;
	char buf[8192];
	int rt;

	test_init(argc, argv);
	rt = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	p = (struct pollfd){.fd = rt, .events = POLLIN};
	if (rt < 0 || send(rt, &req, sizeof(req), 0) != sizeof(req) || poll(&p, 1, 2000) != 1)
		test_abort("route socket: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(rt, buf, sizeof(buf), MSG_DONTWAIT);
	if (recv(rt, buf, sizeof(buf), MSG_DONTWAIT) < (ssize_t)sizeof(struct nlmsghdr) ||
	    ((struct nlmsghdr *)buf)->nlmsg_seq != 9)
		fail("the reply to RTM_GETLINK is no longer queued");
	return test_finish();
}
