/*
 * aio_ring: two AIO contexts (io_setup, raw syscalls) come back at their addresses with their
 * completed events still unread.  ctx1 (8 events, a one-page ring) was used: one pread
 * submitted and reaped, then two more completed and left unread (head 1, tail 3).  ctx2 (300
 * events, a ring of several pages) went once round: all but two slots reaped, then three more
 * completed and left unread, so its tail is below its head.  After the restore the unread events
 * come out of io_getevents in order with their data and results, new preads go through both
 * contexts (the context id is the ring address), and io_destroy succeeds.  ZDTM_BREAK destroys
 * ctx1 first.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE 4096
#define CHUNK 16

struct ring {
	unsigned id, nr, head, tail, magic, compat, incompat, header_length;
};

static int fd;
static char expect[FILE_SIZE];
static char bufs[8][CHUNK];

static long io_setup(unsigned n, aio_context_t *ctx) { return syscall(__NR_io_setup, n, ctx); }
static long io_destroy(aio_context_t ctx) { return syscall(__NR_io_destroy, ctx); }

static long io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev)
{
	struct timespec ts = { 5, 0 };
	return syscall(__NR_io_getevents, ctx, min, max, ev, &ts);
}

/* A pread of CHUNK bytes at off into buf, tagged with data. */
static long submit_pread(aio_context_t ctx, void *buf, off_t off, __u64 data)
{
	struct iocb cb, *list[1] = { &cb };

	memset(&cb, 0, sizeof(cb));
	cb.aio_data = data;
	cb.aio_lio_opcode = IOCB_CMD_PREAD;
	cb.aio_fildes = fd;
	cb.aio_buf = (unsigned long)buf;
	cb.aio_nbytes = CHUNK;
	cb.aio_offset = off;
	return syscall(__NR_io_submit, ctx, 1, list);
}

/* Submit one pread and reap it at once. */
static int round_trip(aio_context_t ctx, __u64 data, off_t off)
{
	struct io_event ev;
	char buf[CHUNK];

	if (submit_pread(ctx, buf, off, data) != 1)
		return -1;
	if (io_getevents(ctx, 1, 1, &ev) != 1 || ev.data != data || ev.res != CHUNK)
		return -1;
	return memcmp(buf, expect + off, CHUNK) ? -1 : 0;
}

/* The n events left unread come out in order: data first + i, each read right. */
static void check_unread(const char *name, aio_context_t ctx, int n, __u64 first, int buf0)
{
	struct io_event ev[8];
	long got = io_getevents(ctx, n, 8, ev);

	if (got != n) {
		fail("%s: io_getevents gave %ld events, %d were left unread (%s)", name, got, n,
		     got < 0 ? strerror(errno) : "");
		return;
	}
	for (int i = 0; i < n; i++) {
		off_t off = (off_t)(first + i - 100) * CHUNK;
		if (ev[i].data != first + i || ev[i].res != CHUNK)
			fail("%s: event %d has data %llu res %lld, expected %llu %d", name, i,
			     (unsigned long long)ev[i].data, (long long)ev[i].res,
			     (unsigned long long)(first + i), CHUNK);
		else if (memcmp(bufs[buf0 + i], expect + off, CHUNK))
			fail("%s: the pread of event %d read the wrong bytes", name, i);
	}
}

static void check_header(const char *name, aio_context_t ctx, unsigned head, unsigned tail)
{
	struct ring *r = (struct ring *)ctx;

	if (probe_read(r)) {		/* the signal it took: nothing mapped there */
		fail("%s: no ring mapped at %#llx any more", name, (unsigned long long)ctx);
		return;
	}
	if (r->magic != 0xa10a10a1 || r->head != head || r->tail != tail)
		fail("%s: ring at %#llx has magic %#x head %u tail %u, expected head %u tail %u", name,
		     (unsigned long long)ctx, r->magic, r->head, r->tail, head, tail);
}

int main(int argc, char **argv)
{
	aio_context_t ctx1 = 0, ctx2 = 0;
	struct ring *r2;
	unsigned nr2, head2;
	char *path;

	test_init(argc, argv);
	path = test_path(".data");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		test_abort("open %s: %s", path, strerror(errno));
	fill_pattern(expect, sizeof(expect), 42);
	if (write(fd, expect, sizeof(expect)) != sizeof(expect))
		test_abort("write: %s", strerror(errno));
	if (io_setup(8, &ctx1) || io_setup(300, &ctx2))
		test_abort("io_setup: %s", strerror(errno));

	/* ctx1: used once, then two completions left unread */
	if (round_trip(ctx1, 1, 0))
		test_abort("ctx1: first pread failed");
	if (submit_pread(ctx1, bufs[0], 0 * CHUNK, 100) != 1 || submit_pread(ctx1, bufs[1], 1 * CHUNK, 101) != 1)
		test_abort("ctx1: io_submit: %s", strerror(errno));
	check_header("ctx1 before", ctx1, 1, 3);

	/* ctx2: round the ring once, three completions left unread across its end */
	r2 = (struct ring *)ctx2;
	nr2 = r2->nr;
	for (unsigned i = 0; i < nr2 - 2; i++)
		if (round_trip(ctx2, 7, (i % 64) * CHUNK))
			test_abort("ctx2: pread %u failed", i);
	for (int i = 0; i < 3; i++)
		if (submit_pread(ctx2, bufs[2 + i], (off_t)(10 + i) * CHUNK, 110 + i) != 1)
			test_abort("ctx2: io_submit: %s", strerror(errno));
	head2 = nr2 - 2;
	check_header("ctx2 before", ctx2, head2, 1);
	if (test_failed())
		test_abort("the rings are not as the test expects before the dump");

	test_daemon();
	test_waitsig();

	if (zdtm_break)
		io_destroy(ctx1);
	check_header("ctx1", ctx1, 1, 3);
	check_header("ctx2", ctx2, head2, 1);
	check_unread("ctx1", ctx1, 2, 100, 0);
	check_unread("ctx2", ctx2, 3, 110, 2);
	if (round_trip(ctx1, 300, 5 * CHUNK))
		fail("ctx1: a pread after the restore failed (%s)", strerror(errno));
	if (round_trip(ctx2, 301, 6 * CHUNK))
		fail("ctx2: a pread after the restore failed (%s)", strerror(errno));
	if (io_destroy(ctx1))
		fail("io_destroy ctx1: %s", strerror(errno));
	if (io_destroy(ctx2))
		fail("io_destroy ctx2: %s", strerror(errno));
	close(fd);
	unlink(path);
	return test_finish();
}
