/*
 * refused_aio: an AIO context (io_setup, 8 events; no fd, a "/[aio]" ring mapping) whose ring
 * header the program overwrote (magic zeroed: the kernel never reads it, io_setup always writes
 * it).  crpy restores AIO contexts (aio_ring) but only rings io_setup would make, so this one is
 * refused at dump by its ring address (refused_kinds.h); then the context still takes a pread,
 * hands its event back through io_getevents, and io_destroy succeeds.
 */
#include "refused_kinds.h"

#include <linux/aio_abi.h>
#include <time.h>

int main(int argc, char **argv)
{
	aio_context_t ctx = 0;
	struct io_event ev;
	struct iocb cb, *list[1] = { &cb };
	struct timespec wait = { 5, 0 };
	char buf[8];
	int fd;

	test_init(argc, argv);
	fd = open("/dev/zero", O_RDONLY);
	if (fd < 0 || syscall(__NR_io_setup, 8, &ctx))
		test_abort("open /dev/zero or io_setup: %s", strerror(errno));
	((unsigned *)ctx)[4] = 0;             /* struct aio_ring: id, nr, head, tail, magic ... */
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		syscall(__NR_io_destroy, ctx);
	memset(&cb, 0, sizeof(cb));
	cb.aio_data = 77;
	cb.aio_lio_opcode = IOCB_CMD_PREAD;
	cb.aio_fildes = fd;
	cb.aio_buf = (unsigned long)buf;
	cb.aio_nbytes = sizeof(buf);
	if (syscall(__NR_io_submit, ctx, 1, list) != 1)
		fail("io_submit on the context: %s", strerror(errno));
	else if (syscall(__NR_io_getevents, ctx, 1, 1, &ev, &wait) != 1 || ev.data != 77 || ev.res != sizeof(buf))
		fail("io_getevents on the context: %s", strerror(errno));
	if (syscall(__NR_io_destroy, ctx))
		fail("io_destroy: %s", strerror(errno));
	return test_finish();
}
