/*
 * guard: guard regions installed with madvise(MADV_GUARD_INSTALL).  They do not show in
 * /proc/self/maps, yet every access to them must fault (caught with a SIGSEGV handler and
 * sigsetjmp), while the pages around them keep their data.  After SIGTERM the same must hold,
 * and the mapping must still be one VMA.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

#define NPAGES 16
#define SEED 0x6a4dULL

static char *area;
static char maps[262144];

static int is_guard(int pg) { return pg == 4 || pg == 5 || pg == 10 || pg == 15; }

static void check_pages(const char *when)
{
	for (int pg = 0; pg < NPAGES; pg++) {
		char *p = area + pg * PAGE_SIZE;
		int rd = probe_read(p), wr = probe_write(p + 100);
		if (is_guard(pg)) {
			if (!rd || !wr)
				fail("%s: guard page %d does not fault (read %d, write %d)", when, pg, rd, wr);
		} else if (rd || wr) {
			fail("%s: page %d faults", when, pg);
		} else if (check_pattern(p, PAGE_SIZE, SEED + pg) >= 0) {
			fail("%s: page %d lost its data", when, pg);
		}
	}
}

static int vmas_in_area(void)
{
	char *line, *save = NULL;
	int n = 0;
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0)
		return -1;
	for (line = strtok_r(maps, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < (unsigned long)area + NPAGES * PAGE_SIZE &&
		    e > (unsigned long)area)
			n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	area = mmap(NULL, NPAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap failed");
	for (int pg = 0; pg < NPAGES; pg++)
		fill_pattern(area + pg * PAGE_SIZE, PAGE_SIZE, SEED + pg);
	for (int pg = 0; pg < NPAGES; pg++)
		if (is_guard(pg) && madvise(area + pg * PAGE_SIZE, PAGE_SIZE, MADV_GUARD_INSTALL))
			test_abort("madvise(MADV_GUARD_INSTALL) failed: %s", strerror(errno));
	check_pages("before dump");
	if (test_failed())
		test_abort("guard regions do not work on this kernel");
	if (vmas_in_area() != 1)
		test_abort("the area is %d VMAs, want 1", vmas_in_area());
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		madvise(area + 10 * PAGE_SIZE, PAGE_SIZE, MADV_GUARD_REMOVE);
	check_pages("after SIGTERM");
	if (vmas_in_area() != 1)
		fail("the area is %d VMAs now, want 1", vmas_in_area());
	return test_finish();
}
