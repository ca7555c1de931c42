/*
 * fanotify: a fanotify group (FAN_CLASS_NOTIF, FAN_NONBLOCK, O_RDONLY event fds) with inode
 * marks: a file (FAN_MODIFY|FAN_CLOSE_WRITE), a directory (FAN_OPEN|FAN_EVENT_ON_CHILD) and, in
 * it, a file whose opens are ignored (ignored mask FAN_OPEN, FAN_MARK_IGNORED_SURV_MODIFY); a
 * second group (blocking, close-on-exec) with no mark.  After restore: the group and its marks as
 * fdinfo lists them, flags; writing the file reports FAN_MODIFY with an fd on it, opening a file
 * in the directory reports FAN_OPEN, opening the ignored file reports nothing.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

static void group_text(int fd, char *out, size_t size)
{
	char path[64], info[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_whole(path, info, sizeof(info)) < 0)
		test_abort("fdinfo: %s", strerror(errno));
	out[0] = 0;
	for (char *l = strtok(info, "\n"); l; l = strtok(NULL, "\n"))
		if (!strncmp(l, "fanotify ", 9))
			snprintf(out + strlen(out), size - strlen(out), "%s\n", l);
}

/* The mask of the next event and the inode its fd is on (0 mask: none). */
static uint64_t next_event(int grp, ino_t *ino)
{
	char buf[4096] __attribute__((aligned(8)));
	struct fanotify_event_metadata *ev = (void *)buf;
	struct stat st;
	if (read(grp, buf, sizeof(buf)) < (ssize_t)sizeof(*ev))
		return 0;
	*ino = ev->fd >= 0 && !fstat(ev->fd, &st) ? st.st_ino : 0;
	if (ev->fd >= 0)
		close(ev->fd);
	return ev->mask;
}

static ino_t ino_of(const char *path)
{
	struct stat st;
	return stat(path, &st) ? 0 : st.st_ino;
}

int main(int argc, char **argv)
{
	char dir[PATH_MAX], file[PATH_MAX], quiet_file[PATH_MAX + 8], other[PATH_MAX + 8];
	char before[4096], after[4096];
	int grp, idle;
	ino_t ino;
	uint64_t mask;

	test_init(argc, argv);
	snprintf(dir, sizeof(dir), "%s", test_path(".dir"));
	snprintf(file, sizeof(file), "%s", test_path(".file"));
	snprintf(quiet_file, sizeof(quiet_file), "%s/quiet", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	if (mkdir(dir, 0755) || close(open(file, O_CREAT | O_WRONLY, 0644)) || close(open(quiet_file, O_CREAT | O_WRONLY, 0644)) ||
	    close(open(other, O_CREAT | O_WRONLY, 0644)))
		test_abort("setup: %s", strerror(errno));
	grp = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
	idle = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDWR);
	if (grp < 0 || idle < 0 ||
	    fanotify_mark(grp, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, file) ||
	    fanotify_mark(grp, FAN_MARK_ADD, FAN_OPEN | FAN_EVENT_ON_CHILD, AT_FDCWD, dir) ||
	    fanotify_mark(grp, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN,
			  AT_FDCWD, quiet_file))
		test_abort("fanotify: %s", strerror(errno));
	while (next_event(grp, &ino))
		;
	group_text(grp, before, sizeof(before));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fanotify_mark(grp, FAN_MARK_REMOVE, FAN_OPEN | FAN_EVENT_ON_CHILD, AT_FDCWD, dir);
	group_text(grp, after, sizeof(after));
	if (strcmp(before, after)) {
		test_msg("the group before the dump:\n%s---- now:\n%s", before, after);
		fail("the group or its marks changed");
	}
	if ((mask = next_event(grp, &ino)))
		fail("an event queued after restore: %#llx", (unsigned long long)mask);
	int f = open(file, O_WRONLY);
	if (f < 0 || write(f, "x", 1) != 1)
		fail("write: %s", strerror(errno));
	if (!((mask = next_event(grp, &ino)) & FAN_MODIFY) || ino != ino_of(file))
		fail("writing the marked file: mask %#llx on inode %lu", (unsigned long long)mask, (unsigned long)ino);
	close(f);
	while (next_event(grp, &ino))         /* its FAN_CLOSE_WRITE */
		;
	close(open(quiet_file, O_RDONLY));
	if ((mask = next_event(grp, &ino)))
		fail("opening the ignored file reported %#llx", (unsigned long long)mask);
	close(open(other, O_RDONLY));
	if (!((mask = next_event(grp, &ino)) & FAN_OPEN) || ino != ino_of(other))
		fail("opening a file in the marked directory: mask %#llx", (unsigned long long)mask);
	if (!(fcntl(grp, F_GETFL) & O_NONBLOCK) || (fcntl(idle, F_GETFL) & O_NONBLOCK) || !(fcntl(idle, F_GETFD) & FD_CLOEXEC))
		fail("flags changed");
	unlink(other);
	unlink(quiet_file);
	rmdir(dir);
	unlink(file);
	return test_finish();
}
