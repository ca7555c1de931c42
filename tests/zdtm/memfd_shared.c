/*
 * memfd_shared: a 1 MiB memfd mapped MAP_SHARED by the test and its child (the fd closed: only the
 * mappings hold it).  After restore both see the data, a write by either is seen by the other, and
 * the mapping is still a memfd of that name (its maps line).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (1UL << 20)


/* the maps line of the mapping at `area` names the memfd */
static int mapped_as_memfd(const void *area)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/maps", "r");
	int found = 0;

	snprintf(want, sizeof(want), "%lx-", (unsigned long)area);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, want, strlen(want)) == 0)
			found = strstr(line, "/memfd:crpy-zdtm (deleted)") != NULL;
	if (f)
		fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	unsigned char *area;
	int fd;
	pid_t kid;

	test_init(argc, argv);
	fd = memfd_create("crpy-zdtm", 0);
	if (fd < 0 || ftruncate(fd, SIZE))
		test_abort("memfd: %s", strerror(errno));
	area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (area == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	close(fd);
	fill_pattern(area, SIZE / 2, 0xfeed);
	test_usr1_init();
	kid = test_fork();
	if (kid == 0) {
		test_usr1_wait();
		/* the parent's write must be visible here, then answer with one of ours */
		if (check_pattern(area, SIZE / 2, 0xfeed) >= 0)
			_exit(1);
		if (check_pattern(area + SIZE / 2, PAGE_SIZE, 0xbeef) >= 0)
			_exit(2);
		fill_pattern(area + SIZE / 2 + PAGE_SIZE, PAGE_SIZE, 0xcafe);
		_exit(0);
	}
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		mmap(area + SIZE / 2, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		     -1, 0);
	if (!mapped_as_memfd(area))
		fail("the mapping is no longer /memfd:crpy-zdtm in /proc/self/maps");
	long bad = check_pattern(area, SIZE / 2, 0xfeed);
	if (bad >= 0)
		fail("data differs at +%ld", bad);
	fill_pattern(area + SIZE / 2, PAGE_SIZE, 0xbeef);
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "child");
	if (code == 1)
		fail("the child sees other data");
	else if (code == 2)
		fail("the child does not see the parent's write: not shared");
	else if (code > 0)
		fail("child exited %d", code);
	if (check_pattern(area + SIZE / 2 + PAGE_SIZE, PAGE_SIZE, 0xcafe) >= 0)
		fail("the parent does not see the child's write: not shared");
	return test_finish();
}
