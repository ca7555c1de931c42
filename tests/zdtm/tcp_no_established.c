/*
 * tcp_no_established: a TCP connection over loopback, both ends in the test, a message queued each
 * way, dumped WITHOUT --tcp-established: the dump must refuse in one line naming the pid, the fd
 * and the connection's addresses, with the hint to use --tcp-established, and leave the task
 * untouched (tests/zdtm/desc.py: dump_fails; the harness compares maps, fds and signal state).
 * The test then checks its own state: both ends still get their queued message, and talk.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char mem[1 << 20];

static void tcp_pair(int *client, int *server)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	int lsk = socket(AF_INET, SOCK_STREAM, 0);

	if (lsk < 0 || bind(lsk, (struct sockaddr *)&addr, sizeof(addr)) || listen(lsk, 1) ||
	    getsockname(lsk, (struct sockaddr *)&addr, &len))
		test_abort("tcp listen: %s", strerror(errno));
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&addr, sizeof(addr)))
		test_abort("tcp connect: %s", strerror(errno));
	*server = accept(lsk, NULL, NULL);
	if (*server < 0)
		test_abort("tcp accept: %s", strerror(errno));
	close(lsk);
}

static void expect(int fd, const char *what)
{
	char buf[32];

	if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) != 6 || memcmp(buf, "queued", 6))
		fail("the %s lost its queued message", what);
}

int main(int argc, char **argv)
{
	int client, server;
	char buf[8];

	test_init(argc, argv);
	tcp_pair(&client, &server);
	if (write(server, "queued", 6) != 6 || write(client, "queued", 6) != 6)
		test_abort("write: %s", strerror(errno));
	fill_pattern(mem, sizeof(mem), 0xabab);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		mem[777] ^= 1;
	usleep(10000);                             /* loopback delivers at once; leave it a moment */
	expect(server, "server end");
	expect(client, "client end");
	if (write(client, "ping", 4) != 4 || read(server, buf, sizeof(buf)) != 4 || memcmp(buf, "ping", 4))
		fail("the connection no longer carries data");
	long bad = check_pattern(mem, sizeof(mem), 0xabab);
	if (bad >= 0)
		fail("memory differs at +%ld", bad);
	return test_finish();
}
