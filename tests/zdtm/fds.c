/*
 * fds: the fd table of a plain daemon.  stdin on /dev/null, stdout/stderr appended to the
 * outfile, a read-write regular file at an offset, an O_APPEND|O_CLOEXEC file, a read-only file
 * at an offset, and /dev/null on a high fd, with gaps between the numbers.  After SIGTERM the
 * set of open fds must be exactly the same, and each fd must have its path, file (dev/ino),
 * access mode, O_APPEND, close-on-exec and offset; then each is used: the append goes to the
 * end, the read gives the bytes at the offset.
 */
#include "lib/zdtmtst.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fd_expect {
	int fd;
	const char *path;
	int flags;   /* access mode | O_APPEND */
	int cloexec;
	off_t offset; /* -1: do not check (stdout: grows as the test writes) */
	dev_t dev;
	ino_t ino;
};

static struct fd_expect fds[8];
static int nfds;
static char buf[65536];

static void expect(int fd, const char *path, int flags, int cloexec, off_t offset)
{
	struct stat st;
	if (fstat(fd, &st))
		test_abort("fstat(%d): %s", fd, strerror(errno));
	fds[nfds++] = (struct fd_expect){fd, path, flags, cloexec, offset, st.st_dev, st.st_ino};
}

static int open_at(const char *path, int flags, int fd)
{
	int f = open(path, flags, 0644);
	if (f < 0 || dup2(f, fd) != fd)
		test_abort("open %s as fd %d: %s", path, fd, strerror(errno));
	close(f);
	if (flags & O_CLOEXEC)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

static void check_fd(const struct fd_expect *e)
{
	char link[4096], proc[64];
	struct stat st;
	ssize_t n;
	int fl, fdfl;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", e->fd);
	n = readlink(proc, link, sizeof(link) - 1);
	if (n < 0 || fstat(e->fd, &st)) {
		fail("fd %d is not open", e->fd);
		return;
	}
	link[n] = 0;
	if (strcmp(link, e->path))
		fail("fd %d points to %s, want %s", e->fd, link, e->path);
	if (st.st_dev != e->dev || st.st_ino != e->ino)
		fail("fd %d is another file (dev/ino changed)", e->fd);
	fl = fcntl(e->fd, F_GETFL) & (O_ACCMODE | O_APPEND);
	if (fl != e->flags)
		fail("fd %d flags %#o, want %#o", e->fd, fl, e->flags);
	fdfl = fcntl(e->fd, F_GETFD);
	if (!!(fdfl & FD_CLOEXEC) != e->cloexec)
		fail("fd %d close-on-exec is %d, want %d", e->fd, !!(fdfl & FD_CLOEXEC), e->cloexec);
	if (e->offset >= 0 && lseek(e->fd, 0, SEEK_CUR) != e->offset)
		fail("fd %d offset %lld, want %lld", e->fd, (long long)lseek(e->fd, 0, SEEK_CUR),
		     (long long)e->offset);
}

static void check_fd_set(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int seen = 0;

	if (!d) {
		fail("opendir /proc/self/fd");
		return;
	}
	while ((de = readdir(d))) {
		int fd, known = 0;
		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d))
			continue;
		for (int i = 0; i < nfds; i++)
			known |= fds[i].fd == fd;
		if (!known) {
			char link[4096], proc[64];
			ssize_t n;
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			n = readlink(proc, link, sizeof(link) - 1);
			link[n > 0 ? n : 0] = 0;
			fail("unexpected fd %d open (%s)", fd, link);
		}
		seen++;
	}
	closedir(d);
	if (seen != nfds)
		fail("%d fds open, want %d", seen, nfds);
}

static void use_fds(const char *rw_path, const char *app_path)
{
	char c;
	long len;

	(void)rw_path;
	if (write(11, "line2\n", 6) != 6)
		fail("write to the O_APPEND fd: %s", strerror(errno));
	len = read_whole(app_path, buf, sizeof(buf));
	if (len != 12 || memcmp(buf, "line1\nline2\n", 12))
		fail("the O_APPEND file holds \"%.*s\"", (int)(len > 0 ? len : 0), buf);
	if (read(15, &c, 1) != 1 || c != 'h')
		fail("read at offset 7 of the read-only file gave '%c'", c);
	if (read(12, &c, 1) != 0 || write(12, "x", 1) != 1)
		fail("/dev/null on fd 12 does not behave");
	if (read(10, &c, 1) != 1 || c != (char)('a' + 12345 % 26))
		fail("read at offset 12345 of the read-write file gave '%c'", c);
}

int main(int argc, char **argv)
{
	char *rw_path, *app_path, *ro_path;

	test_init(argc, argv);
	rw_path = test_path(".rw");
	app_path = test_path(".app");
	ro_path = test_path(".ro");
	for (int i = 0; i < 20000; i++)
		buf[i] = (char)('a' + i % 26);
	open_at(rw_path, O_RDWR | O_CREAT | O_TRUNC, 10);
	if (write(10, buf, 20000) != 20000 || lseek(10, 12345, SEEK_SET) != 12345)
		test_abort("write %s", rw_path);
	open_at(app_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 11);
	if (write(11, "line1\n", 6) != 6)
		test_abort("write %s", app_path);
	open_at("/dev/null", O_RDWR, 12);
	open_at(ro_path, O_WRONLY | O_CREAT | O_TRUNC, 15);
	if (write(15, "0123456hello", 12) != 12)
		test_abort("write %s", ro_path);
	open_at(ro_path, O_RDONLY, 15);
	lseek(15, 7, SEEK_SET);

	expect(0, "/dev/null", O_RDWR, 0, 0);
	expect(1, zdtm_outfile, O_WRONLY | O_APPEND, 0, -1);
	expect(2, zdtm_outfile, O_WRONLY | O_APPEND, 0, -1);
	expect(10, rw_path, O_RDWR, 0, 12345);
	expect(11, app_path, O_WRONLY | O_APPEND, 1, 6);
	expect(12, "/dev/null", O_RDWR, 0, 0);
	expect(15, ro_path, O_RDONLY, 0, 7);
	test_daemon();
	check_fd_set(); /* only now: the pipe to the parent is gone */
	if (test_failed())
		test_msg("(the fd set was already wrong before any dump)");

	test_waitsig();
	if (zdtm_break)
		lseek(10, 0, SEEK_SET);
	check_fd_set();
	for (int i = 0; i < nfds; i++)
		check_fd(&fds[i]);
	use_fds(rw_path, app_path);
	return test_finish();
}
