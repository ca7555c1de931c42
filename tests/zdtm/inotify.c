/*
 * inotify: an inotify group (O_NONBLOCK) watching a directory (IN_CREATE|IN_DELETE), a file in
 * it (IN_MODIFY|IN_ONESHOT|IN_EXCL_UNLINK) and, after a removed watch left a gap in the numbers,
 * the directory's parent (IN_ATTRIB|IN_ONLYDIR); a second, blocking group (close-on-exec) with
 * no watch.  After restore: the watches fdinfo lists (wd, inode, mask) are the same, and each
 * reports with its wd: a file created in the directory, a write to the file, a chmod of the
 * directory's parent; a new watch gets the next number.
 */
#include "lib/zdtmtst.h"
#include "lib/inotifyw.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

static char before[4096];

int main(int argc, char **argv)
{
	char dir[PATH_MAX], file[PATH_MAX];
	int grp, quiet, wdir, wfile, wgap, wparent, wd;
	uint32_t mask;

	test_init(argc, argv);
	snprintf(dir, sizeof(dir), "%s", test_path(".dir"));
	snprintf(file, sizeof(file), "%s/file", dir);
	if (mkdir(dir, 0755) || close(open(file, O_CREAT | O_WRONLY, 0644)))
		test_abort("setup: %s", strerror(errno));
	grp = inotify_init1(IN_NONBLOCK);
	quiet = inotify_init1(IN_CLOEXEC);
	wdir = inotify_add_watch(grp, dir, IN_CREATE | IN_DELETE);
	wfile = inotify_add_watch(grp, file, IN_MODIFY | IN_ONESHOT | IN_EXCL_UNLINK);
	wgap = inotify_add_watch(grp, "/", IN_ACCESS);
	inotify_rm_watch(grp, wgap);
	while (inotify_next_event(grp, &mask) >= 0)   /* the IN_IGNORED of the removed watch */
		;
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", dir);
	*strrchr(parent, '/') = 0;
	wparent = inotify_add_watch(grp, parent, IN_ATTRIB | IN_ONLYDIR);
	if (grp < 0 || quiet < 0 || wdir < 0 || wfile < 0 || wparent < 0)
		test_abort("inotify: %s", strerror(errno));
	inotify_watches(grp, before, sizeof(before));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		inotify_rm_watch(grp, wfile);
	inotify_expect_watches(grp, before);
	while ((wd = inotify_next_event(grp, &mask)) >= 0)
		fail("an event queued after restore: wd %d mask %#x", wd, mask);
	char created[PATH_MAX + 8];
	snprintf(created, sizeof(created), "%s/new", dir);
	close(open(created, O_CREAT | O_WRONLY, 0644));
	inotify_expect_event(grp, wdir, IN_CREATE, "creating a file");
	int f = open(file, O_WRONLY);
	if (write(f, "x", 1) != 1)
		fail("write: %s", strerror(errno));
	close(f);
	inotify_expect_event(grp, wfile, IN_MODIFY, "writing the file");
	chmod(dir, 0700);
	inotify_expect_event(grp, wparent, IN_ATTRIB, "chmod in the parent");
	if (!(fcntl(grp, F_GETFL) & O_NONBLOCK) || !(fcntl(quiet, F_GETFD) & FD_CLOEXEC) ||
	    (fcntl(quiet, F_GETFL) & O_NONBLOCK))
		fail("flags changed");
	unlink(created);
	unlink(file);
	rmdir(dir);
	return test_finish();
}
