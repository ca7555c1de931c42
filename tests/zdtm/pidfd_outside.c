/*
 * pidfd_outside: a pidfd of pid 1, outside the dumped tree: crpy cannot restore a reference to a
 * process it does not restore, so the dump must fail in one line naming the pidfd and leave the
 * task untouched (tests/zdtm/desc.py: dump_fails).  Then the pidfd still names pid 1.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"
#include "lib/pidfdw.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int of_init;

	test_init(argc, argv);
	of_init = open_pidfd(1, 0);
	if (of_init < 0)
		test_abort("pidfd_open(1): %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(of_init);
	if (pidfd_pid(of_init) != 1)
		fail("the pidfd no longer names pid 1");
	return test_finish();
}
