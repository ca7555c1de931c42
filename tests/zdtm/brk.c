/*
 * brk: a heap grown with sbrk in many steps (and shrunk a little), filled with data.  After
 * SIGTERM the program break must be where it was (glibc's cached value and the kernel's), the
 * [heap] line of /proc/self/maps and start_brk (/proc/self/stat) must be unchanged, the data
 * must be intact, and the heap must still grow and shrink.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STEP (64UL << 10)
#define NSTEPS 64
#define SHRINK (100UL << 10)
#define HEAP_SEED 0xb4bULL

static char *start, *end;
static char maps[262144], stat_before[4096], stat_after[4096];
static char heap_line[256];

static unsigned long start_brk_of(const char *stat)
{
	const char *p = strrchr(stat, ')');
	unsigned long v = 0;
	/* field 47 (start_brk); fields counted from 3 after ") " */
	for (int field = 2; p && field < 47; field++)
		p = strchr(p + 1, ' ');
	if (p)
		sscanf(p + 1, "%lu", &v);
	return v;
}

static const char *heap_maps_line(void)
{
	char *l;
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0 || !(l = strstr(maps, "[heap]")))
		return "";
	while (l > maps && l[-1] != '\n')
		l--;
	return l;
}

int main(int argc, char **argv)
{
	long bad;

	test_init(argc, argv);
	start = sbrk(0);
	for (int i = 0; i < NSTEPS; i++)
		if (sbrk((intptr_t)STEP) == (void *)-1)
			test_abort("sbrk step %d failed", i);
	if (sbrk(-(intptr_t)SHRINK) == (void *)-1)
		test_abort("sbrk shrink failed");
	end = sbrk(0);
	fill_pattern(start, (size_t)(end - start), HEAP_SEED);
	snprintf(heap_line, sizeof(heap_line), "%.*s", (int)strcspn(heap_maps_line(), "\n"), heap_maps_line());
	if (!heap_line[0] || read_whole("/proc/self/stat", stat_before, sizeof(stat_before)) <= 0)
		test_abort("no [heap] in /proc/self/maps or no /proc/self/stat");
	test_msg("heap %p-%p: %s", start, end, heap_line);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		start[STEP * 3 + 7] ^= 1;
	if (sbrk(0) != end)
		fail("glibc's break is %p, want %p", sbrk(0), end);
	if ((char *)syscall(SYS_brk, 0) != end)
		fail("the kernel's break is %p, want %p", (void *)syscall(SYS_brk, 0), end);
	read_whole("/proc/self/stat", stat_after, sizeof(stat_after));
	if (start_brk_of(stat_after) != start_brk_of(stat_before))
		fail("start_brk is %#lx, want %#lx", start_brk_of(stat_after), start_brk_of(stat_before));
	if (strncmp(heap_maps_line(), heap_line, strlen(heap_line)))
		fail("[heap] line is \"%.*s\", want \"%s\"", (int)strcspn(heap_maps_line(), "\n"),
		     heap_maps_line(), heap_line);
	bad = check_pattern(start, (size_t)(end - start), HEAP_SEED);
	if (bad >= 0)
		fail("heap data differs at +%ld", bad);
	if (sbrk((intptr_t)(1UL << 20)) != end)
		fail("the heap does not grow any more");
	else {
		memset(end, 0x5a, 1UL << 20);
		if (sbrk(-(intptr_t)(1UL << 20)) == (void *)-1 || sbrk(0) != end)
			fail("the heap does not shrink back");
	}
	return test_finish();
}
