/*
 * fown_outside: a pipe whose owner (F_SETOWN) is pid 1, outside the dumped tree: the restore
 * could not make it the owner again, so the dump must refuse in one line and leave the task
 * untouched (desc.py: dump_fails); the owner is then still pid 1.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int p[2];

	test_init(argc, argv);
	if (pipe(p) || fcntl(p[0], F_SETOWN, 1))
		test_abort("pipe owned by pid 1: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fcntl(p[0], F_SETOWN, 0);
	if (fcntl(p[0], F_GETOWN) != 1)
		fail("the pipe's owner is %d, not pid 1", fcntl(p[0], F_GETOWN));
	return test_finish();
}
