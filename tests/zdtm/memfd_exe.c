/*
 * memfd_exe: a task whose executable is a memfd.  The test copies its own binary into a memfd
 * "zdtm-exe" and fexecve()s it (MFD_CLOEXEC: no fd is left on it), so /proc/self/exe is
 * "/memfd:zdtm-exe (deleted)" and the text, rodata and data are private mappings of the memfd.
 * A global in .data is written (a copy-on-write page of the memfd mapping).  A forked child runs
 * the same memfd and writes its own value to the global.  After restore: the exe link, the memfd
 * mappings (place, perms, offset) all on the exe's inode, the exe's mode, size and bytes (those
 * of the binary on disk), the exe still refused for writing (ETXTBSY), the written global, the fd
 * set; the child's exe is the parent's inode, with its own global.  ZDTM_BREAK changes the global.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME "zdtm-exe"
#define EXE_LINK "/memfd:" NAME " (deleted)"
#define ORIG_ENV "ZDTM_MEMFD_EXE_ORIG"
#define DATA_VALUE 0x5eed0bad1dea

extern char **environ;
static volatile long data_word = 42;           /* in .data: a private page of the memfd mapping */
static const char rodata[] = "read-only data of the memfd executable";
static const char *rodata_ptr = rodata;
static char maps_before[8192], maps_after[8192], fds_before[1024], fds_after[1024], buf[16384];

/* Stage 1: the binary on disk copies itself into a memfd and executes that, same argv. */
static void exec_from_memfd(char **argv)
{
	char self[4096];
	struct stat st;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int src, mfd;

	if (n <= 0)
		test_abort("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = 0;
	src = open("/proc/self/exe", O_RDONLY);
	mfd = memfd_create(NAME, MFD_CLOEXEC);
	if (src < 0 || mfd < 0 || fstat(src, &st))
		test_abort("open self / memfd_create: %s", strerror(errno));
	for (off_t off = 0; off < st.st_size;)
		if (sendfile(mfd, src, &off, st.st_size - off) <= 0)
			test_abort("copy the binary into the memfd: %s", strerror(errno));
	close(src);
	setenv(ORIG_ENV, self, 1);
	fexecve(mfd, argv, environ);
	test_abort("fexecve: %s", strerror(errno));
}

/* The memfd's lines of /proc/self/maps without their inode column, and the inode they name. */
static void memfd_maps(char *out, size_t size, unsigned long *ino, int *lines)
{
	char *line, *save, *o = out;

	if (read_whole("/proc/self/maps", buf, sizeof(buf)) <= 0)
		test_abort("cannot read /proc/self/maps");
	*lines = 0;
	*ino = 0;
	out[0] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char range[64], perms[8], off[32], dev[16];
		unsigned long inode;

		if (!strstr(line, EXE_LINK))
			continue;
		if (sscanf(line, "%63s %7s %31s %15s %lu", range, perms, off, dev, &inode) != 5)
			continue;
		if (*ino && *ino != inode)
			*ino = ~0UL;                   /* two inodes: never matches the exe's */
		else
			*ino = inode;
		o += snprintf(o, size - (o - out), "%s %s %s\n", range, perms, off);
		(*lines)++;
	}
}

static void list_fds(char *out, size_t size)
{
	char *o = out;

	out[0] = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			o += snprintf(o, size - (o - out), "%d ", fd);
}

/* The exe's bytes are those of the binary on disk. */
static void check_contents(void)
{
	const char *orig = getenv(ORIG_ENV);
	char a[4096], b[4096];
	int fa = open("/proc/self/exe", O_RDONLY), fb = orig ? open(orig, O_RDONLY) : -1;
	ssize_t na, nb;

	if (fa < 0 || fb < 0) {
		fail("open the exe or %s: %s", orig ? orig : "(no " ORIG_ENV ")", strerror(errno));
		goto out;
	}
	do {
		na = read(fa, a, sizeof(a));
		nb = read(fb, b, sizeof(b));
		if (na != nb || (na > 0 && memcmp(a, b, na))) {
			fail("the exe's bytes differ from %s", orig);
			break;
		}
	} while (na > 0);
out:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
}

/* The child: after the restore, its exe is its parent's memfd and its global its own. */
static int child_check(void)
{
	char exe[256], parent[64];
	struct stat mine, theirs;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	exe[n > 0 ? n : 0] = 0;
	if (strcmp(exe, EXE_LINK))
		return 1;
	snprintf(parent, sizeof(parent), "/proc/%d/exe", getppid());
	if (stat("/proc/self/exe", &mine) || stat(parent, &theirs) || mine.st_ino != theirs.st_ino ||
	    mine.st_dev != theirs.st_dev)
		return 2;
	return data_word == DATA_VALUE + 1 ? 0 : 3;
}

int main(int argc, char **argv)
{
	char exe[256];
	struct stat before, after;
	unsigned long ino_before, ino_after;
	int lines_before, lines_after, wfd;
	pid_t kid;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	exe[n > 0 ? n : 0] = 0;
	if (strcmp(exe, EXE_LINK))
		exec_from_memfd(argv);

	test_init(argc, argv);
	data_word = DATA_VALUE;
	if (stat("/proc/self/exe", &before))
		test_abort("stat /proc/self/exe: %s", strerror(errno));
	memfd_maps(maps_before, sizeof(maps_before), &ino_before, &lines_before);
	if (lines_before < 3 || ino_before != before.st_ino)
		test_abort("%d memfd mappings on inode %lu, exe inode %lu", lines_before, ino_before,
			   (unsigned long)before.st_ino);
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		data_word = DATA_VALUE + 1;
		test_usr1_wait();
		_exit(child_check());
	}
	test_write_pids(&kid, 1);
	test_daemon();
	list_fds(fds_before, sizeof(fds_before));
	test_waitsig();

	if (zdtm_break)
		data_word = 7;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	if (strcmp(exe, EXE_LINK))
		fail("/proc/self/exe is %s, want %s", exe, EXE_LINK);
	if (stat("/proc/self/exe", &after))
		fail("stat /proc/self/exe: %s", strerror(errno));
	else if (after.st_mode != before.st_mode || after.st_size != before.st_size)
		fail("exe mode %o size %ld, was %o size %ld", after.st_mode, (long)after.st_size,
		     before.st_mode, (long)before.st_size);
	memfd_maps(maps_after, sizeof(maps_after), &ino_after, &lines_after);
	if (strcmp(maps_before, maps_after))
		fail("memfd mappings were:\n%sare:\n%s", maps_before, maps_after);
	if (ino_after != after.st_ino)
		fail("the memfd mappings are on inode %lu, the exe is inode %lu", ino_after,
		     (unsigned long)after.st_ino);
	check_contents();
	wfd = open("/proc/self/exe", O_WRONLY);
	if (wfd >= 0 || errno != ETXTBSY)
		fail("opening the exe for writing: %s, want ETXTBSY", wfd >= 0 ? "worked" : strerror(errno));
	if (data_word != DATA_VALUE)
		fail("data word %#lx, want %#lx", data_word, (long)DATA_VALUE);
	if (strcmp(*(const char *volatile *)&rodata_ptr, "read-only data of the memfd executable"))
		fail("rodata changed");
	list_fds(fds_after, sizeof(fds_after));
	if (strcmp(fds_before, fds_after))
		fail("fds were %s, are %s", fds_before, fds_after);
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code == 1)
		fail("the child's exe is not " EXE_LINK);
	else if (code == 2)
		fail("the child's exe is not its parent's memfd inode");
	else if (code > 0)
		fail("the child's global lost its value (exit %d)", code);
	return test_finish();
}
