/*
 * fanotify_mount: a fanotify group with a mount mark (FAN_MARK_MOUNT on the test's directory):
 * crpy restores inode marks only, so the dump must fail in one line naming the mark and leave
 * the task untouched (tests/zdtm/desc.py: dump_fails).  Then the mount mark is still listed.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[64], info[4096];
	int grp;

	test_init(argc, argv);
	grp = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
	if (grp < 0 || fanotify_mark(grp, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, "/"))
		test_abort("fanotify: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		fanotify_mark(grp, FAN_MARK_REMOVE | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, "/");
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", grp);
	if (read_whole(path, info, sizeof(info)) < 0 || !strstr(info, "fanotify mnt_id:"))
		fail("the mount mark is gone");
	return test_finish();
}
