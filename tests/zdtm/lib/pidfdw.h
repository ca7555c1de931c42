/*
 * pidfdw.h: small helpers of the pidfd tests (header only): pidfd_open(2) without a libc wrapper,
 * and the pid a pidfd names as its fdinfo says.
 */
#ifndef ZDTM_PIDFDW_H
#define ZDTM_PIDFDW_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtmtst.h"

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif

static inline int open_pidfd(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

/* The "Pid:" of fd's fdinfo: the task's pid, -1 once it has been reaped, -2 when fd is no pidfd
 * (or not open). */
static inline pid_t pidfd_pid(int fd)
{
	char path[64], info[512], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_whole(path, info, sizeof(info)) < 0 || !(p = strstr(info, "\nPid:")))
		return -2;
	return atoi(p + 5);
}

#endif
