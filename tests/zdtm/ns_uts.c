/*
 * ns_uts: the test runs in a UTS namespace of its own (unshare(CLONE_NEWUTS) before it
 * daemonizes) with its own host name.  crpy does not restore namespaces yet, so the dump must
 * fail with one line naming the uts namespace and leave the task untouched (tests/zdtm/desc.py:
 * dump_fails).  Then the task is still in its namespace with its host name.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME "crpy-zdtm-uts"

int main(int argc, char **argv)
{
	char name[64];
	struct stat own, host;  /* host: the namespace it started in */

	if (stat("/proc/self/ns/uts", &host) || unshare(CLONE_NEWUTS) || sethostname(NAME, strlen(NAME))) {
		fprintf(stderr, "unshare/sethostname: %s\n", strerror(errno));
		return 1;
	}
	test_init(argc, argv);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		sethostname("other", 5);
	if (gethostname(name, sizeof(name)) || strcmp(name, NAME))
		fail("host name is '%s', want '%s'", name, NAME);
	if (stat("/proc/self/ns/uts", &own))
		fail("stat of ns/uts: %s", strerror(errno));
	else if (own.st_ino == host.st_ino)
		fail("the test is back in the uts namespace it started in");
	return test_finish();
}
