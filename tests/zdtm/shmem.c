/*
 * shmem: shared anonymous memory.  A 32 MiB MAP_SHARED|MAP_ANONYMOUS area has its first 8 MiB
 * written (the rest never touched), a 1 MiB one is written and then made read-only.  After
 * SIGTERM: the data is there, untouched pages read as zeros, the maps lines (rw-s / r--s
 * /dev/zero (deleted)) are as before apart from the inode, and the area is still shared: a
 * forked child's write shows in the parent.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG (32UL << 20)
#define WRITTEN (8UL << 20)
#define SMALL (1UL << 20)

static unsigned char *big, *small;
static char maps[262144], line_big[256], line_small[256];

/* The maps line at addr without its inode (a restore gets a new shmem inode). */
static void line_of(const void *addr, char *out, size_t size)
{
	char want[32], perms[8], off[32], path[128] = "", *l;
	unsigned long s, e;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	out[0] = 0;
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0 || !(l = strstr(maps, want)))
		return;
	if (sscanf(l, "%lx-%lx %7s %31s %*s %*s %127[^\n]", &s, &e, perms, off, path) >= 4)
		snprintf(out, size, "%lx-%lx %s %s %s", s, e, perms, off, path);
}

int main(int argc, char **argv)
{
	char now[256];
	long bad;
	pid_t pid;
	int status;

	test_init(argc, argv);
	big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	small = mmap(NULL, SMALL, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (big == MAP_FAILED || small == MAP_FAILED)
		test_abort("mmap failed");
	fill_pattern(big, WRITTEN, 0x5a5a);
	fill_pattern(small, SMALL, 0xa5a5);
	mprotect(small, SMALL, PROT_READ);
	line_of(big, line_big, sizeof(line_big));
	line_of(small, line_small, sizeof(line_small));
	test_msg("%s\n%s", line_big, line_small);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		big[12345] ^= 1;
	line_of(big, now, sizeof(now));
	if (strcmp(now, line_big))
		fail("maps line \"%s\", was \"%s\"", now, line_big);
	line_of(small, now, sizeof(now));
	if (strcmp(now, line_small))
		fail("maps line \"%s\", was \"%s\"", now, line_small);
	if ((bad = check_pattern(big, WRITTEN, 0x5a5a)) >= 0)
		fail("written part differs at +%ld", bad);
	if ((bad = check_pattern(small, SMALL, 0xa5a5)) >= 0)
		fail("read-only area differs at +%ld", bad);
	for (unsigned long i = WRITTEN; i < BIG; i += 512)
		if (big[i]) {
			fail("never-written byte +%lu is not zero", i);
			break;
		}
	if (!probe_write(small))
		fail("the read-only shared area can be written");
	pid = test_fork();
	if (pid == 0) {
		fill_pattern(big + WRITTEN, PAGE_SIZE, 0x77);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || check_pattern(big + WRITTEN, PAGE_SIZE, 0x77) >= 0)
		fail("a child's write did not show in the parent: the area is no longer shared");
	return test_finish();
}
