/*
 * unsupported_fd: the test holds a UNIX socket pair, which crpy cannot dump (yet), and an eventfd:
 * the dump must fail with one line and leave the task untouched (tests/zdtm/desc.py: dump_fails;
 * the harness compares maps, fds and signal state).  The test then checks its own state: the
 * socket pair carries its queued message, the eventfd holds its count, its memory is intact.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char mem[1 << 20];

int main(int argc, char **argv)
{
	int sv[2], ev;
	char buf[32];
	uint64_t count;

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		test_abort("socketpair: %s", strerror(errno));
	ev = eventfd(42, EFD_NONBLOCK);
	if (ev < 0 || write(sv[0], "queued", 6) != 6)
		test_abort("eventfd/write: %s", strerror(errno));
	fill_pattern(mem, sizeof(mem), 0xabab);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		mem[777] ^= 1;
	if (recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) != 6 || memcmp(buf, "queued", 6))
		fail("the socket lost its queued message");
	if (read(ev, &count, sizeof(count)) != sizeof(count) || count != 42)
		fail("the eventfd lost its count");
	long bad = check_pattern(mem, sizeof(mem), 0xabab);
	if (bad >= 0)
		fail("memory differs at +%ld", bad);
	return test_finish();
}
