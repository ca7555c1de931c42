/*
 * pipe_tree: a pipe between two processes of the tree: the child holds the write end and has
 * written 200 KiB (pipe buffer 256 KiB) before the dump, the parent holds the read end.  After
 * restore the parent reads all 200 KiB in order, then the child writes 1000 more bytes and exits;
 * the parent reads them and then EOF (the child's end was the only writer).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define INFLIGHT (200 << 10)

static unsigned char buf[INFLIGHT + 1000];

int main(int argc, char **argv)
{
	int p[2];
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	if (pipe(p) || fcntl(p[1], F_SETPIPE_SZ, 256 << 10) < (256 << 10))
		test_abort("pipe: %s", strerror(errno));
	fill_pattern(buf, sizeof(buf), 0x7777);
	kid = test_fork();
	if (kid == 0) {
		close(p[0]);
		if (write(p[1], buf, INFLIGHT) != INFLIGHT)
			_exit(1);
		kill(getppid(), SIGUSR1);
		test_usr1_wait();
		_exit(write(p[1], buf + INFLIGHT, 1000) == 1000 ? 0 : 2);
	}
	close(p[1]);
	test_usr1_wait();
	memset(buf, 0, sizeof(buf));
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		read(p[0], buf, 10);
	fcntl(p[0], F_SETFL, O_NONBLOCK);   /* what is in flight is all there already */
	size_t got = read_full(p[0], buf, INFLIGHT);
	if (got != INFLIGHT)
		fail("read %zu of %d bytes in flight", got, INFLIGHT);
	fcntl(p[0], F_SETFL, 0);
	kill(kid, SIGUSR1);
	got += read_full(p[0], buf + got, sizeof(buf) - got);
	long bad = check_pattern(buf, sizeof(buf), 0x7777);
	if (got != sizeof(buf) || bad >= 0)
		fail("read %zu of %zu bytes, first difference at %ld", got, sizeof(buf), bad);
	char c;
	if (read(p[0], &c, 1) != 0)
		fail("no EOF after the child exited: another writer holds the pipe");
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child exited %d", code);
	return test_finish();
}
