/*
 * inotify_queued: an inotify group with an event queued (a file created in the watched
 * directory, not read yet): crpy cannot put queued events back, so the dump must fail in one line
 * naming the group and leave the task untouched (tests/zdtm/desc.py: dump_fails).  Then the
 * event is still there to read, with its name.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char dir[PATH_MAX], file[PATH_MAX + 8], buf[4096] __attribute__((aligned(8)));
	struct inotify_event *ev = (struct inotify_event *)buf;
	int grp, wd;

	test_init(argc, argv);
	snprintf(dir, sizeof(dir), "%s", test_path(".dir"));
	snprintf(file, sizeof(file), "%s/queued", dir);
	grp = inotify_init1(IN_NONBLOCK);
	if (mkdir(dir, 0755) || grp < 0 || (wd = inotify_add_watch(grp, dir, IN_CREATE)) < 0 ||
	    close(open(file, O_CREAT | O_WRONLY, 0644)))
		test_abort("setup: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		read(grp, buf, sizeof(buf));
	if (read(grp, buf, sizeof(buf)) < (ssize_t)sizeof(*ev) || ev->wd != wd || !(ev->mask & IN_CREATE) ||
	    strcmp(ev->name, "queued"))
		fail("the queued IN_CREATE event is gone");
	unlink(file);
	rmdir(dir);
	return test_finish();
}
