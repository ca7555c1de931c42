/*
 * pipe1m: a pipe with a 2 MiB buffer holding 1 MiB in flight (both ends in the test), a second
 * pipe with 5 bytes.  After restore: the buffer size (F_GETPIPE_SZ), the flags of both ends, and
 * the reader gets every byte in order, then nothing more (EAGAIN); the pipe still works.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define INFLIGHT (1UL << 20)
#define BUFSZ (2 << 20)

int main(int argc, char **argv)
{
	int p[2], q[2];
	unsigned char *buf;

	test_init(argc, argv);
	buf = mmap(NULL, INFLIGHT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pipe2(p, O_NONBLOCK) || pipe(q))
		test_abort("pipe: %s", strerror(errno));
	if (fcntl(p[1], F_SETPIPE_SZ, BUFSZ) < BUFSZ)
		test_abort("F_SETPIPE_SZ %d: %s", BUFSZ, strerror(errno));
	fill_pattern(buf, INFLIGHT, 0x6666);
	if (write(p[1], buf, INFLIGHT) != (ssize_t)INFLIGHT || write(q[1], "hello", 5) != 5)
		test_abort("write: %s", strerror(errno));
	memset(buf, 0, INFLIGHT);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		read(p[0], buf, 1);
	if (fcntl(p[0], F_GETPIPE_SZ) != BUFSZ)
		fail("pipe size %d, want %d", fcntl(p[0], F_GETPIPE_SZ), BUFSZ);
	if (!(fcntl(p[0], F_GETFL) & O_NONBLOCK) || (fcntl(q[0], F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK flags changed");
	size_t got = read_full(p[0], buf, INFLIGHT);
	if (got != INFLIGHT)
		fail("read %zu bytes of %lu in flight", got, INFLIGHT);
	else {
		long bad = check_pattern(buf, INFLIGHT, 0x6666);
		if (bad >= 0)
			fail("byte %ld of the pipe differs", bad);
	}
	char c[8];
	if (read(p[0], c, 1) != -1 || errno != EAGAIN)
		fail("more than 1 MiB in the pipe");
	if (read(q[0], c, 8) != 5 || memcmp(c, "hello", 5))
		fail("the small pipe lost its bytes");
	if (write(p[1], "x", 1) != 1 || read(p[0], c, 1) != 1 || c[0] != 'x')
		fail("the pipe does not work after restore");
	return test_finish();
}
