/*
 * xonly: execute-only memory.  A page holding a small function is mprotect()ed to PROT_EXEC
 * alone; on a CPU with protection keys (PKU) the kernel makes it truly unreadable with its
 * execute-only key.  After SIGTERM the maps line must still say --xp, calling the function must
 * work, and reading the page must fault exactly as before (the outfile says which case held).
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static const unsigned char code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3}; /* mov $42,%eax; ret */
static unsigned char *page;
static int read_faulted_before;
static char maps[262144];

static const char *perms_of(const void *addr)
{
	static char perms[8];
	char want[32], *l;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	perms[0] = 0;
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) >= 0 && (l = strstr(maps, want)))
		sscanf(l, "%*s %7s", perms);
	return perms;
}

int main(int argc, char **argv)
{
	int (*fn)(void);

	test_init(argc, argv);
	page = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		test_abort("mmap failed");
	memcpy(page, code, sizeof(code));
	if (mprotect(page, PAGE_SIZE, PROT_EXEC))
		test_abort("mprotect(PROT_EXEC) failed");
	fn = (int (*)(void))page;
	if (fn() != 42)
		test_abort("the function does not return 42");
	read_faulted_before = probe_read(page) != 0;
	test_msg("execute-only page %p: reads %s (%s)", page, read_faulted_before ? "fault" : "work",
		 read_faulted_before ? "protection keys enforce it" : "no PKU: only --xp is checked");
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		mprotect(page, PAGE_SIZE, PROT_READ | PROT_EXEC);
	if (strcmp(perms_of(page), "--xp"))
		fail("maps says %s, want --xp", perms_of(page));
	if ((probe_read(page) != 0) != read_faulted_before)
		fail("reading the execute-only page %s now", read_faulted_before ? "works" : "faults");
	if (fn() != 42)
		fail("the function no longer returns 42");
	return test_finish();
}
