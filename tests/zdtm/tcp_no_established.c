/*
 * tcp_no_established: a TCP connection over loopback, both ends in the test, a message queued each
 * way, dumped WITHOUT --tcp-established: the dump must refuse in one line naming the pid, the fd
 * and the connection's addresses, with the hint to use --tcp-established, and leave the task
 * untouched (tests/zdtm/desc.py: dump_fails; the harness compares maps, fds and signal state).
 * The test then checks its own state: both ends still get their queued message, and talk.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"
#include "lib/untouched.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int client, server;
	char buf[8];

	test_init(argc, argv);
	inet_tcp_pair(0, &client, &server);
	if (write(server, "queued", 6) != 6 || write(client, "queued", 6) != 6)
		test_abort("write: %s", strerror(errno));
	untouched_mem_fill();
	test_daemon();

	test_waitsig();
	untouched_mem_break();
	usleep(10000);                             /* loopback delivers at once; leave it a moment */
	untouched_expect_queued(server, "server end");
	untouched_expect_queued(client, "client end");
	if (write(client, "ping", 4) != 4 || read(server, buf, sizeof(buf)) != 4 || memcmp(buf, "ping", 4))
		fail("the connection no longer carries data");
	untouched_mem_check();
	return test_finish();
}
