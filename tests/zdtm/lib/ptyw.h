/*
 * ptyw.h: the pty tests' way to make a pseudo-terminal (header only): a master opened, granted and
 * unlocked, at the fd the test wants, and its slave's path.
 */
#ifndef ZDTM_PTYW_H
#define ZDTM_PTYW_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zdtmtst.h"

/* A new pty master (O_RDWR | O_NOCTTY) at fd `at` (where open put it when at < 0); the slave's
 * path into slave (size bytes) unless slave is NULL.  Without one the setup fails (test_abort). */
static inline int pty_open_master(int at, char *slave, size_t size)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);

	if (m < 0 || grantpt(m) || unlockpt(m))
		test_abort("pty: %s", strerror(errno));
	if (at >= 0 && m != at) {
		if (dup2(m, at) != at)
			test_abort("pty: dup2 to fd %d: %s", at, strerror(errno));
		close(m);
		m = at;
	}
	if (slave)
		snprintf(slave, size, "%s", ptsname(m));
	return m;
}

#endif
