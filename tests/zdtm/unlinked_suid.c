/*
 * unlinked_suid: unlinked files with set-user-ID and set-group-ID bits, owned by another user and
 * group: a 100 KiB one of mode 6755 (uid 4321, gid 4322) and a small one of mode 2710 (gid 4323).
 * After restore: modes exactly (a write or a chown clears those bits: the restore must set the
 * mode last), owners, data, nlink 0.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG 40
#define SMALL 41

static unsigned char buf[100 << 10], got[100 << 10];

static void make(const char *suffix, int fd, size_t len, uid_t uid, gid_t gid, mode_t mode)
{
	int f = open(test_path(suffix), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, buf, len) != (ssize_t)len || fchown(f, uid, gid) || fchmod(f, mode) || dup2(f, fd) < 0)
		test_abort("%s: %s", suffix, strerror(errno));
	close(f);
	if (unlink(test_path(suffix)))
		test_abort("unlink: %s", strerror(errno));
}

static void check(int fd, size_t len, uid_t uid, gid_t gid, mode_t mode)
{
	struct stat st;

	if (fstat(fd, &st)) {
		fail("fstat: %s", strerror(errno));
		return;
	}
	if ((st.st_mode & 07777) != mode)
		fail("fd %d: mode %o, want %o", fd, st.st_mode & 07777, mode);
	if (st.st_uid != uid || st.st_gid != gid)
		fail("fd %d: owner %u:%u, want %u:%u", fd, st.st_uid, st.st_gid, uid, gid);
	if (st.st_nlink != 0 || st.st_size != (off_t)len)
		fail("fd %d: nlink %lu size %lld", fd, (unsigned long)st.st_nlink, (long long)st.st_size);
	if (pread(fd, got, len, 0) != (ssize_t)len || memcmp(got, buf, len))
		fail("fd %d: data differs", fd);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	fill_pattern(buf, sizeof(buf), 0x5e7);
	make(".big", BIG, sizeof(buf), 4321, 4322, 06755);
	make(".small", SMALL, 1000, 0, 4323, 02710);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fchmod(BIG, 0755);
	check(BIG, sizeof(buf), 4321, 4322, 06755);
	check(SMALL, 1000, 0, 4323, 02710);
	return test_finish();
}
