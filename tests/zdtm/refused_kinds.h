/*
 * Shared by the tests of the kinds crpy refuses at dump (io_uring, userfaultfd, perf events, bpf
 * maps and programs, AIO rings crpy cannot put back): each holds one, the dump must fail in one line naming it and
 * leave the task untouched (tests/zdtm/desc.py: dump_fails), then the test checks its object
 * still works.  ZDTM_BREAK makes it drop the object first, so the check can fail.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Whether fd is still open and of the anon inode kind `name` ("[io_uring]", "bpf-map", ...). */
static int fd_is(int fd, const char *name)
{
	char path[64], link[128] = "";
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (readlink(path, link, sizeof(link) - 1) < 0)
		return 0;
	return strstr(link, name) != NULL;
}
