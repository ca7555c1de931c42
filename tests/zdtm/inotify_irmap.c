/*
 * inotify_irmap: inotify watches on a ramfs, whose file handles only identify the inode
 * (open_by_handle_at says ESTALE): a file two directories down (IN_MODIFY) and a directory
 * (IN_CREATE).  The dump finds them by a scan of the mounts (criu's irmap) and keeps their
 * paths.  After restore: the watches fdinfo lists (wd, inode, mask) are the same, and a write to
 * the file and a file created in the directory are reported with their wd numbers.
 * The ramfs is mounted on TEST.ramfs (beside the outfile) and unmounted at the end.
 */
#include "lib/zdtmtst.h"
#include "lib/inotifyw.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char before[4096], top[PATH_MAX];

int main(int argc, char **argv)
{
	char dir[PATH_MAX], sub[PATH_MAX], file[PATH_MAX], created[PATH_MAX];
	int grp, wdir, wfile, wd, f;
	uint32_t mask;

	test_init(argc, argv);
	snprintf(top, sizeof(top), "%s", test_path(".ramfs"));
	if (mkdir(top, 0700) || mount("none", top, "ramfs", 0, NULL))
		test_skip("cannot mount a ramfs: %s", strerror(errno));
	snprintf(dir, sizeof(dir), "%s/a", top);
	snprintf(sub, sizeof(sub), "%s/a/b", top);
	snprintf(file, sizeof(file), "%s/a/b/file", top);
	snprintf(created, sizeof(created), "%s/a/new", top);
	if (mkdir(dir, 0755) || mkdir(sub, 0755) || close(open(file, O_CREAT | O_WRONLY, 0644)))
		test_abort("setup: %s", strerror(errno));
	grp = inotify_init1(IN_NONBLOCK);
	wfile = inotify_add_watch(grp, file, IN_MODIFY);
	wdir = inotify_add_watch(grp, dir, IN_CREATE);
	if (grp < 0 || wdir < 0 || wfile < 0)
		test_abort("inotify: %s", strerror(errno));
	inotify_watches(grp, before, sizeof(before));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		inotify_rm_watch(grp, wfile);
	inotify_expect_watches(grp, before);
	while ((wd = inotify_next_event(grp, &mask)) >= 0 && !(mask & IN_IGNORED))
		fail("an event queued after restore: wd %d mask %#x", wd, mask);
	f = open(file, O_WRONLY);
	if (f < 0 || write(f, "x", 1) != 1)
		fail("write: %s", strerror(errno));
	close(f);
	inotify_expect_event(grp, wfile, IN_MODIFY, "writing the file");
	close(open(created, O_CREAT | O_WRONLY, 0644));
	inotify_expect_event(grp, wdir, IN_CREATE, "creating a file");
	close(grp);
	umount2(top, MNT_DETACH);
	rmdir(top);
	return test_finish();
}
