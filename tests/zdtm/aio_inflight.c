/*
 * aio_inflight: an AIO poll request (IOCB_CMD_POLL) on an eventfd nobody writes stays in flight
 * through the dump.  After the restore a write to the eventfd must complete it: io_getevents
 * returns it with its data and POLLIN.
 * A known gap of crpy (tests/zdtm/known_gaps.py): no interface outside the kernel lists a
 * context's requests in flight (the ring holds completions only), so the dump cannot refuse this
 * one and the restored context has lost it.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <linux/aio_abi.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define POLL_DATA 0x9011

int main(int argc, char **argv)
{
	aio_context_t ctx = 0;
	struct iocb cb, *list[1] = { &cb };
	struct io_event ev;
	struct timespec ts = { 5, 0 };
	int efd;
	long n;

	test_init(argc, argv);
	efd = eventfd(0, 0);
	if (efd < 0 || syscall(__NR_io_setup, 8, &ctx))
		test_abort("eventfd / io_setup: %s", strerror(errno));
	memset(&cb, 0, sizeof(cb));
	cb.aio_data = POLL_DATA;
	cb.aio_lio_opcode = IOCB_CMD_POLL;
	cb.aio_fildes = efd;
	cb.aio_buf = POLLIN;
	if (syscall(__NR_io_submit, ctx, 1, list) != 1)
		test_skip("IOCB_CMD_POLL is not supported here: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (!zdtm_break && eventfd_write(efd, 1))
		fail("eventfd write: %s", strerror(errno));
	n = syscall(__NR_io_getevents, ctx, 1, 1, &ev, &ts);
	if (n != 1)
		fail("the poll request in flight did not complete once its eventfd was written (io_getevents %ld: %s)",
		     n, n < 0 ? strerror(errno) : "nothing in 5 s");
	else if (ev.data != POLL_DATA || !(ev.res & POLLIN))
		fail("the poll request completed with data %#llx res %#llx", (unsigned long long)ev.data,
		     (unsigned long long)ev.res);
	return test_finish();
}
