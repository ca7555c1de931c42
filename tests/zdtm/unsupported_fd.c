/*
 * unsupported_fd: the test holds an AF_VSOCK stream socket, a kind crpy cannot dump (nor criu),
 * beside a UNIX socket pair with a queued message that it can: the dump must fail with one line
 * naming the vsock socket and leave the task untouched (tests/zdtm/desc.py: dump_fails; the
 * harness compares maps, fds and signal state).  The test then checks its own state: the vsock
 * socket is still one, the socket pair carries its queued message, its memory is intact.
 * Without vsock in the kernel (CONFIG_VSOCKETS) it is skipped.
 */
#include "lib/zdtmtst.h"
#include "lib/untouched.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int sv[2], vsk, domain;
	socklen_t len = sizeof(domain);

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		test_abort("socketpair: %s", strerror(errno));
	vsk = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (vsk < 0)
		test_skip("no AF_VSOCK socket: %s (CONFIG_VSOCKETS)", strerror(errno));
	if (write(sv[0], "queued", 6) != 6)
		test_abort("write: %s", strerror(errno));
	untouched_mem_fill();
	test_daemon();

	test_waitsig();
	untouched_mem_break();
	usleep(10000);                             /* loopback delivers at once; leave it a moment */
	untouched_expect_queued(sv[1], "socket pair");
	if (getsockopt(vsk, SOL_SOCKET, SO_DOMAIN, &domain, &len) || domain != AF_VSOCK)
		fail("the vsock socket is no longer one");
	untouched_mem_check();
	return test_finish();
}
