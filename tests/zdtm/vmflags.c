/*
 * vmflags: madvise and mlock state of mappings, as /proc/self/smaps shows it in VmFlags:
 * MADV_DONTFORK (dc), MADV_WIPEONFORK (wf), MADV_DONTDUMP (dd), MADV_HUGEPAGE (hg),
 * MADV_NOHUGEPAGE (nh), MADV_RANDOM (rr), MADV_SEQUENTIAL (sr), mlock (lo), MADV_MERGEABLE (mg,
 * KSM) and a MAP_DROPPABLE mapping (dp, Linux 6.11+: the vDSO getrandom state of glibc 2.41+).
 * These change what a program sees (a wipe-on-fork page is how OpenSSL keeps its RNG state out
 * of children).  After SIGTERM the VmFlags of each mapping must be as before and the data intact.
 * KSM and MAP_DROPPABLE are kernel options: when the kernel lacks one the test says so by name in
 * its outfile and checks the rest.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define NMAPS 10
#define MAP_DROPPABLE_ 0x08
#define ADV_MLOCK (-1)
#define ADV_DROPPABLE (-2)
#define LEN (4 * PAGE_SIZE)

static const struct {
	int advice;
	const char *name;
} advices[NMAPS] = {
	{MADV_DONTFORK, "dontfork"}, {MADV_WIPEONFORK, "wipeonfork"}, {MADV_DONTDUMP, "dontdump"},
	{MADV_HUGEPAGE, "hugepage"}, {MADV_NOHUGEPAGE, "nohugepage"}, {MADV_RANDOM, "random"},
	{MADV_SEQUENTIAL, "sequential"}, {ADV_MLOCK, "mlock"}, {MADV_MERGEABLE, "mergeable"},
	{ADV_DROPPABLE, "droppable"},
};

static char *maps[NMAPS];
static int missing[NMAPS];      /* the kernel lacks this one: not checked */
static char flags_before[NMAPS][256];

int main(int argc, char **argv)
{
	char now[256];

	test_init(argc, argv);
	for (int i = 0; i < NMAPS; i++) {
		/* one mapping each, with a PROT_NONE page after it so that none merge */
		int droppable = advices[i].advice == ADV_DROPPABLE;
		char *m = mmap(NULL, LEN + PAGE_SIZE, PROT_READ | PROT_WRITE,
			       (droppable ? MAP_DROPPABLE_ : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED && droppable && errno == EINVAL) {
			test_msg("droppable: MAP_DROPPABLE not supported by this kernel, not checked");
			missing[i] = 1;
			continue;
		}
		if (m == MAP_FAILED || mprotect(m + LEN, PAGE_SIZE, PROT_NONE))
			test_abort("mmap failed");
		fill_pattern(m, LEN, 0x7f + (uint64_t)i);
		int r = advices[i].advice >= 0 ? madvise(m, LEN, advices[i].advice)
			: advices[i].advice == ADV_MLOCK ? mlock(m, LEN) : 0;
		if (r && advices[i].advice == MADV_MERGEABLE && errno == EINVAL) {
			test_msg("mergeable: no KSM in this kernel, not checked");
			missing[i] = 1;
			continue;
		}
		if (r)
			test_abort("%s failed", advices[i].name);
		maps[i] = m;
		smaps_field(m, "VmFlags", flags_before[i], sizeof(flags_before[i]));
		if (!flags_before[i][0])
			test_abort("no VmFlags for the %s mapping", advices[i].name);
		test_msg("%s: VmFlags %s", advices[i].name, flags_before[i]);
	}
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		madvise(maps[1], LEN, MADV_KEEPONFORK);
	for (int i = 0; i < NMAPS; i++) {
		if (missing[i])
			continue;
		smaps_field(maps[i], "VmFlags", now, sizeof(now));
		if (strcmp(now, flags_before[i]))
			fail("%s mapping: VmFlags \"%s\", was \"%s\"", advices[i].name, now, flags_before[i]);
		if (check_pattern(maps[i], LEN, 0x7f + (uint64_t)i) >= 0)
			fail("%s mapping lost its data", advices[i].name);
	}
	return test_finish();
}
