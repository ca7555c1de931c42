/*
 * refused_io_uring: an io_uring instance (4 entries): refused at dump (refused_kinds.h); then
 * the fd is still the io_uring and a NOP submitted through io_uring_enter is accepted.
 */
#include "refused_kinds.h"

#include <sys/mman.h>

int main(int argc, char **argv)
{
	unsigned params[30] = { 0 };          /* struct io_uring_params, 120 bytes */
	int fd;

	test_init(argc, argv);
	fd = syscall(__NR_io_uring_setup, 4, params);
	if (fd < 0)
		test_abort("io_uring_setup: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(fd);
	if (!fd_is(fd, "[io_uring]"))
		fail("the io_uring fd is gone");
	else if (syscall(__NR_io_uring_enter, fd, 0, 0, 0, NULL, 0) < 0)
		fail("io_uring_enter: %s", strerror(errno));
	return test_finish();
}
