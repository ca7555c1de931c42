/*
 * Helpers of the inotify zdtm tests (header only): the watches a group's fdinfo lists and their
 * check against the list recorded before the dump, and the next event of a non-blocking group and
 * its check against the wd and mask it must have.
 */
#ifndef ZDTM_INOTIFYW_H
#define ZDTM_INOTIFYW_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "zdtmtst.h"

/* The "inotify wd:... mask:... ignored_mask:..." lines of fd's fdinfo, without the file handles
 * (their encoding may differ after a restore), one per line into out. */
static inline void inotify_watches(int fd, char *out, size_t size)
{
	char path[64], info[4096], *p;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_whole(path, info, sizeof(info)) < 0)
		test_abort("fdinfo: %s", strerror(errno));
	out[0] = 0;
	for (char *l = strtok(info, "\n"); l; l = strtok(NULL, "\n")) {
		if (strncmp(l, "inotify ", 8))
			continue;
		if ((p = strstr(l, " fhandle-bytes")))
			*p = 0;
		snprintf(out + strlen(out), size - strlen(out), "%s\n", l);
	}
}

/* The wd of the next event (its mask in *mask), -1 for none. */
static inline int inotify_next_event(int fd, uint32_t *mask)
{
	char buf[4096] __attribute__((aligned(8)));
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < (ssize_t)sizeof(struct inotify_event))
		return -1;
	struct inotify_event *ev = (struct inotify_event *)buf;
	*mask = ev->mask;
	return ev->wd;
}

/* fail()s, showing both lists, if fd's watches are no longer the ones recorded in before. */
static inline void inotify_expect_watches(int fd, const char *before)
{
	char after[4096];

	inotify_watches(fd, after, sizeof(after));
	if (strcmp(before, after)) {
		test_msg("watches before the dump:\n%s---- now:\n%s", before, after);
		fail("the watches fdinfo lists changed");
	}
}

/* fail()s, saying what was done, unless the next event is on want_wd with a bit of want_mask
 * (named by want_name). */
static inline void inotify_expect_event_named(int fd, int want_wd, uint32_t want_mask, const char *want_name,
					      const char *what)
{
	uint32_t mask = 0;
	int wd = inotify_next_event(fd, &mask);

	if (wd != want_wd || !(mask & want_mask))
		fail("%s: wd %d mask %#x, want wd %d %s", what, wd, mask, want_wd, want_name);
}
#define inotify_expect_event(fd, want_wd, want_mask, what) \
	inotify_expect_event_named(fd, want_wd, want_mask, #want_mask, what)

#endif
