/*
 * lease: file leases (F_SETLEASE) held across the dump, dumped with --file-locks
 * (tests/zdtm/desc.py): a read lease on a file open read-only (fd 40) and a write lease on
 * another open read-write (fd 41).  After restore: F_GETLEASE gives each lease type on its fd
 * and fdinfo shows them ACTIVE and held by the task.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RD 40
#define WR 41

static void lease(const char *suffix, int flags, int fd, int type)
{
	int f = open(test_path(suffix), O_RDWR | O_CREAT, 0644);
	if (f < 0 || write(f, "leased", 6) != 6)
		test_abort("%s: %s", suffix, strerror(errno));
	close(f);
	f = open(test_path(suffix), flags);
	if (f < 0 || dup2(f, fd) < 0)
		test_abort("%s: %s", suffix, strerror(errno));
	close(f);
	if (fcntl(fd, F_SETLEASE, type))
		test_abort("F_SETLEASE on %s: %s", suffix, strerror(errno));
}

static void check(int fd, int type, const char *word)
{
	char path[64], text[4096], want[128];

	if (fcntl(fd, F_GETLEASE) != type)
		fail("fd %d: lease %d, want %d", fd, fcntl(fd, F_GETLEASE), type);
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	snprintf(want, sizeof(want), "LEASE  ACTIVE    %s %d ", word, getpid());
	if (read_whole(path, text, sizeof(text)) < 0 || !strstr(text, want))
		fail("fd %d: fdinfo lacks \"%s\":\n%s", fd, want, text);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	lease(".rd", O_RDONLY, RD, F_RDLCK);
	lease(".wr", O_RDWR, WR, F_WRLCK);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fcntl(WR, F_SETLEASE, F_UNLCK);
	check(RD, F_RDLCK, "READ");
	check(WR, F_WRLCK, "WRITE");
	return test_finish();
}
