/*
 * refused_userfaultfd: a userfaultfd (O_NONBLOCK) after its UFFDIO_API handshake: refused at
 * dump (refused_kinds.h); then the fd is still a userfaultfd, non-blocking, with nothing to read.
 */
#include "refused_kinds.h"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

int main(int argc, char **argv)
{
	struct uffdio_api api = { .api = UFFD_API };
	char buf[64];
	int fd;

	test_init(argc, argv);
	fd = syscall(__NR_userfaultfd, O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api))
		test_abort("userfaultfd: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(fd);
	if (!fd_is(fd, "[userfaultfd]"))
		fail("the userfaultfd is gone");
	else if (read(fd, buf, sizeof(buf)) != -1 || errno != EAGAIN)
		fail("the userfaultfd reads: %s", strerror(errno));
	return test_finish();
}
