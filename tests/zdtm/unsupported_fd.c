/*
 * unsupported_fd: the test holds a TCP socket connected over loopback, which crpy cannot dump
 * (yet), beside a UNIX socket pair with a queued message that it can: the dump must fail with one
 * line and leave the task untouched (tests/zdtm/desc.py: dump_fails; the harness compares maps, fds
 * and signal state).  The test then checks its own state: the TCP connection and the socket pair
 * carry their queued messages, its memory is intact.
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
	int sv[2], client, server;

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		test_abort("socketpair: %s", strerror(errno));
	tcp_pair(&client, &server);
	if (write(sv[0], "queued", 6) != 6 || write(client, "queued", 6) != 6)
		test_abort("write: %s", strerror(errno));
	fill_pattern(mem, sizeof(mem), 0xabab);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		mem[777] ^= 1;
	usleep(10000);                             /* loopback delivers at once; leave it a moment */
	expect(sv[1], "socket pair");
	expect(server, "TCP connection");
	long bad = check_pattern(mem, sizeof(mem), 0xabab);
	if (bad >= 0)
		fail("memory differs at +%ld", bad);
	return test_finish();
}
