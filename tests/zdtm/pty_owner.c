/*
 * pty_owner: a pty pair whose slave /dev/pts/N was given to uid 4242, gid 4243, mode 0604 (as a
 * terminal emulator or login does with chown/chmod).  After restore the slave node, by its path
 * and through the open fd, has the same owner, group and mode, and the pair still carries bytes.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/ptyw.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static void check(const struct stat *st, const char *how)
{
	if (st->st_uid != 4242 || st->st_gid != 4243 || (st->st_mode & 07777) != 0604)
		fail("slave %s: uid %u gid %u mode %o, want 4242 4243 604", how, st->st_uid, st->st_gid,
		     st->st_mode & 07777);
}

int main(int argc, char **argv)
{
	struct stat st;
	struct termios t;
	char path[64], c[4];

	test_init(argc, argv);
	int m = pty_open_master(-1, path, sizeof(path));
	int s = open(path, O_RDWR | O_NOCTTY);
	if (s < 0 || tcgetattr(s, &t))
		test_abort("slave: %s", strerror(errno));
	cfmakeraw(&t);
	if (tcsetattr(s, TCSANOW, &t) || chown(path, 4242, 4243) || chmod(path, 0604))
		test_abort("slave settings: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		chmod(path, 0620);
	if (stat(path, &st))
		fail("stat %s: %s", path, strerror(errno));
	else
		check(&st, "by its path");
	if (fstat(s, &st))
		fail("fstat slave: %s", strerror(errno));
	else
		check(&st, "through the fd");
	if (write(m, "ok", 2) != 2 || read(s, c, 2) != 2 || memcmp(c, "ok", 2))
		fail("the pair does not carry bytes");
	return test_finish();
}
