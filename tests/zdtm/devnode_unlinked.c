/*
 * devnode_unlinked: device nodes made with mknod and unlinked while open: a /dev/null (1:3) of
 * mode 0620 owned by gid 4325 (fd 40) and a /dev/zero (1:5) of mode 0604 (fd 41, at an offset).
 * After restore: each fd is an unlinked character device of its device number, mode and owner,
 * and behaves as that device (the null swallows a write and reads EOF, the zero reads zeros).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define NUL 40
#define ZERO 41

static void make(const char *suffix, int fd, dev_t dev, mode_t mode, gid_t gid)
{
	if (mknod(test_path(suffix), S_IFCHR | mode, dev) || chown(test_path(suffix), 0, gid) ||
	    chmod(test_path(suffix), mode))
		test_abort("mknod %s: %s", suffix, strerror(errno));
	int f = open(test_path(suffix), O_RDWR);
	if (f < 0 || dup2(f, fd) < 0 || unlink(test_path(suffix)))
		test_abort("open %s: %s", suffix, strerror(errno));
	close(f);
}

static void check(int fd, dev_t dev, mode_t mode, gid_t gid)
{
	struct stat st;

	if (fstat(fd, &st))
		fail("fstat %d: %s", fd, strerror(errno));
	else if (!S_ISCHR(st.st_mode) || st.st_rdev != dev || (st.st_mode & 07777) != mode || st.st_gid != gid ||
		 st.st_nlink != 0)
		fail("fd %d: device %u:%u mode %o gid %u nlink %lu, want %u:%u %o %u 0", fd, major(st.st_rdev),
		     minor(st.st_rdev), st.st_mode & 07777, st.st_gid, (unsigned long)st.st_nlink, major(dev), minor(dev),
		     mode, gid);
}

int main(int argc, char **argv)
{
	char buf[64];

	test_init(argc, argv);
	make(".null", NUL, makedev(1, 3), 0620, 4325);
	make(".zero", ZERO, makedev(1, 5), 0604, 0);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		dup2(ZERO, NUL);
	check(NUL, makedev(1, 3), 0620, 4325);
	check(ZERO, makedev(1, 5), 0604, 0);
	if (write(NUL, "gone", 4) != 4 || read(NUL, buf, sizeof(buf)) != 0)
		fail("fd %d does not behave as /dev/null", NUL);
	memset(buf, 1, sizeof(buf));
	if (read(ZERO, buf, sizeof(buf)) != sizeof(buf) || buf[0] || buf[63])
		fail("fd %d does not behave as /dev/zero", ZERO);
	return test_finish();
}
