/*
 * unix_scm_rights: a unix dgram socketpair with a file descriptor in flight (SCM_RIGHTS: a pipe's
 * write end sent and not yet received).  crpy does not restore fds in flight yet, so the dump
 * must refuse in one line naming the fd and the task stay untouched (tests/zdtm/desc.py:
 * dump_fails; peeking at the queue must not lose the message).  Then the message is received
 * with its fd, which still writes into the pipe.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int sv[2], p[2], got = -1;
	char data[8], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = "fd!", .iov_len = 3 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || pipe(p))
		test_abort("socketpair/pipe: %s", strerror(errno));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &p[1], sizeof(int));
	if (sendmsg(sv[0], &m, 0) != 3)
		test_abort("sendmsg: %s", strerror(errno));
	close(p[1]);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(sv[1], data, sizeof(data), 0);
	iov.iov_base = data;
	iov.iov_len = sizeof(data);
	m.msg_controllen = sizeof(cbuf);
	if (recvmsg(sv[1], &m, MSG_DONTWAIT) != 3 || memcmp(data, "fd!", 3))
		fail("the message carrying the fd is lost");
	else if ((cm = CMSG_FIRSTHDR(&m)) == NULL || cm->cmsg_type != SCM_RIGHTS)
		fail("the fd in flight is lost");
	else {
		memcpy(&got, CMSG_DATA(cm), sizeof(int));
		if (write(got, "x", 1) != 1 || read(p[0], data, 1) != 1 || data[0] != 'x')
			fail("the fd received does not write into the pipe");
	}
	return test_finish();
}
