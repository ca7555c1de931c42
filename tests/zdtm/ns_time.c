/*
 * ns_time: the test runs in a time namespace of its own whose CLOCK_MONOTONIC is one day ahead
 * (unshare(CLONE_NEWTIME) and timens_offsets before it daemonizes).  crpy does not restore
 * namespaces yet, so the dump must fail with one line naming the time namespace and leave the
 * task untouched (tests/zdtm/desc.py: dump_fails).  Then the test's clock and its new children's
 * are still a day ahead of CLOCK_BOOTTIME.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define DAY 86400

/* CLOCK_MONOTONIC - CLOCK_BOOTTIME in seconds: about DAY in the namespace, <= 0 outside */
static long mono_ahead(void)
{
	struct timespec mono, boot;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_BOOTTIME, &boot);
	return (long)(mono.tv_sec - boot.tv_sec);
}

int main(int argc, char **argv)
{
	char offsets[64];
	int fd;

	if (unshare(CLONE_NEWTIME)) {
		fprintf(stderr, "unshare(CLONE_NEWTIME): %s\n", strerror(errno));
		return 1;
	}
	snprintf(offsets, sizeof(offsets), "monotonic %d 0", DAY);
	fd = open("/proc/self/timens_offsets", O_WRONLY);
	if (fd < 0 || write(fd, offsets, strlen(offsets)) < 0) {
		fprintf(stderr, "timens_offsets: %s\n", strerror(errno));
		return 1;
	}
	close(fd);
	test_init(argc, argv);          /* forks: the test's process is in the new namespace */
	if (mono_ahead() < DAY - 60)
		test_abort("CLOCK_MONOTONIC is %ld s ahead, not a day", mono_ahead());
	test_daemon();

	test_waitsig();
	if (zdtm_break) {               /* children from now on: in a namespace without the offset */
		fd = -1;
		if (unshare(CLONE_NEWTIME) || (fd = open("/proc/self/timens_offsets", O_WRONLY)) < 0 ||
		    write(fd, "monotonic 0 0", 13) < 0)
			fail("a new time namespace: %s", strerror(errno));
		close(fd);
	}
	if (mono_ahead() < DAY - 60)
		fail("CLOCK_MONOTONIC of the test is %ld s ahead of CLOCK_BOOTTIME, want a day", mono_ahead());
	pid_t kid = test_fork();
	if (kid == 0)
		_exit(mono_ahead() >= DAY - 60 ? 0 : 1);
	int code = test_reap(kid, "a new child of the test");
	if (code > 0)
		fail("a new child of the test is not in its time namespace (exit %d)", code);
	return test_finish();
}
