/*
 * locks: file locks held across the dump (dumped with --file-locks: tests/zdtm/desc.py): a flock
 * LOCK_EX on one file, a POSIX write lock on bytes 100..199 of a second, an OFD read lock on bytes
 * 0..9 of a third.  After restore a forked child (a different owner) finds each one held: flock
 * LOCK_NB gets EWOULDBLOCK, F_GETLK reports the test's pid and range, F_OFD_GETLK a read lock.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#define FL 80
#define PX 81
#define OFD 82

static int open_at(const char *suffix, int fd)
{
	int f = open(test_path(suffix), O_RDWR | O_CREAT, 0644);
	if (f < 0 || ftruncate(f, 4096) || dup2(f, fd) < 0)
		test_abort("open: %s", strerror(errno));
	close(f);
	return fd;
}

/* In a child: 0 if every lock is seen held, else a code saying which is not. */
static int probe_locks(pid_t owner)
{
	struct flock l;
	int f = open(test_path(".flock"), O_RDWR);
	if (flock(f, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		return 1;
	memset(&l, 0, sizeof(l));
	l.l_type = F_WRLCK;
	l.l_whence = SEEK_SET;
	l.l_start = 0;
	l.l_len = 0;
	if (fcntl(PX, F_GETLK, &l) || l.l_type != F_WRLCK || l.l_pid != owner || l.l_start != 100 || l.l_len != 100)
		return 2;
	memset(&l, 0, sizeof(l));
	l.l_type = F_WRLCK;
	l.l_whence = SEEK_SET;
	int f2 = open(test_path(".ofd"), O_RDWR);
	if (fcntl(f2, F_OFD_GETLK, &l) || l.l_type != F_RDLCK || l.l_start != 0 || l.l_len != 10)
		return 3;
	return 0;
}

int main(int argc, char **argv)
{
	struct flock l;

	test_init(argc, argv);
	open_at(".flock", FL);
	open_at(".posix", PX);
	open_at(".ofd", OFD);
	memset(&l, 0, sizeof(l));
	l.l_type = F_WRLCK;
	l.l_whence = SEEK_SET;
	l.l_start = 100;
	l.l_len = 100;
	if (flock(FL, LOCK_EX) || fcntl(PX, F_SETLK, &l))
		test_abort("locking: %s", strerror(errno));
	memset(&l, 0, sizeof(l));
	l.l_type = F_RDLCK;
	l.l_whence = SEEK_SET;
	l.l_len = 10;
	if (fcntl(OFD, F_OFD_SETLK, &l))
		test_abort("OFD lock: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		memset(&l, 0, sizeof(l));
		l.l_type = F_UNLCK;
		l.l_whence = SEEK_SET;
		fcntl(PX, F_SETLK, &l);
	}
	pid_t me = getpid(), kid = test_fork();
	if (kid == 0)
		_exit(probe_locks(me));
	static const char *what[] = { "", "the flock", "the POSIX lock", "the OFD lock" };
	int code = test_reap(kid, "probe child");
	if (code > 0)
		fail("%s is no longer held", code < 4 ? what[code] : "a lock");
	return test_finish();
}
