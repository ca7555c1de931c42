/*
 * refused_aio: an AIO context (io_setup, 8 events; no fd, a "/[aio]" ring mapping): refused at
 * dump (refused_kinds.h); then the context still answers io_getevents (nothing completed) and
 * io_destroy.
 */
#include "refused_kinds.h"

#include <linux/aio_abi.h>
#include <time.h>

int main(int argc, char **argv)
{
	aio_context_t ctx = 0;
	struct io_event ev;
	struct timespec zero = { 0, 0 };

	test_init(argc, argv);
	if (syscall(__NR_io_setup, 8, &ctx))
		test_abort("io_setup: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		syscall(__NR_io_destroy, ctx);
	if (syscall(__NR_io_getevents, ctx, 0, 1, &ev, &zero) != 0)
		fail("io_getevents on the context: %s", strerror(errno));
	if (syscall(__NR_io_destroy, ctx))
		fail("io_destroy: %s", strerror(errno));
	return test_finish();
}
