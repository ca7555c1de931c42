/*
 * ghost_limit: an unlinked file of 2 MiB, above criu's default --ghost-limit of 1 MiB: the dump
 * must refuse it in one line and leave the task untouched (tests/zdtm/desc.py: dump_fails); the
 * task then finds its file, data and offset as they were.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FD 40
#define SIZE (2 << 20)

static unsigned char buf[SIZE], got[SIZE];

int main(int argc, char **argv)
{
	test_init(argc, argv);
	fill_pattern(buf, SIZE, 0x9a57);
	int fd = open(test_path(".big"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, SIZE) != SIZE || dup2(fd, FD) < 0 || unlink(test_path(".big")) ||
	    lseek(FD, 4242, SEEK_SET) != 4242)
		test_abort("file: %s", strerror(errno));
	close(fd);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		pwrite(FD, "X", 1, 1 << 20);
	if (lseek(FD, 0, SEEK_CUR) != 4242)
		fail("offset %ld, want 4242", (long)lseek(FD, 0, SEEK_CUR));
	if (pread(FD, got, SIZE, 0) != SIZE || memcmp(got, buf, SIZE))
		fail("data differs");
	return test_finish();
}
