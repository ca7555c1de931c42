/*
 * lazy_mem: 256 MiB of per-page patterns (every 7th page never written: zeros), checked after
 * SIGTERM page by page in a pseudo-random order, so that under `crpy restore --lazy-pages` the
 * pages arrive by faults in no order the daemon could guess.  Before that, the mm changes the
 * lazy-pages daemon hears of as events: fork (the child checks a quarter of the pages itself,
 * in its own order), mremap of 1 MiB to a new place, madvise(DONTNEED) of 1 MiB (zeros after),
 * munmap of 1 MiB.
 */
#define _GNU_SOURCE
#include "lib/zdtmtst.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (256UL << 20)
#define NPAGES (SIZE / PAGE_SIZE)
#define MIB_PAGES (256UL)
#define MOVED_AT (8 * MIB_PAGES)       /* the MiB mremap()ed elsewhere */
#define DROPPED_AT (16 * MIB_PAGES)    /* the MiB madvise(DONTNEED)ed: zeros after */
#define UNMAPPED_AT (24 * MIB_PAGES)   /* the MiB munmap()ed */

static uint64_t seed;
static unsigned char *area;

static int never_written(unsigned long i) { return i % 7 == 3; }

static int in_mib(unsigned long i, unsigned long at) { return i >= at && i < at + MIB_PAGES; }

/* 0 if page i (at p) holds what it must, else 1 (and a fail line) */
static int check_page(const unsigned char *p, unsigned long i, int zero)
{
	long bad;

	if (zero || never_written(i)) {
		for (unsigned long k = 0; k < PAGE_SIZE; k++)
			if (p[k]) {
				fail("page %lu must be zeros: byte %lu is %#x", i, k, p[k]);
				return 1;
			}
		return 0;
	}
	bad = check_pattern(p, PAGE_SIZE, seed + i);
	if (bad >= 0) {
		fail("page %lu differs at +%ld", i, bad);
		return 1;
	}
	return 0;
}

/* The pages i with i % 4 == part (part 4: all), in the order i = k * step mod NPAGES;
 * changed: the mremap, madvise and munmap happened (in the parent, after the fork). */
static int check_pages(int part, unsigned long step, int changed)
{
	int bad = 0;

	for (unsigned long k = 0; k < NPAGES && bad < 8; k++) {
		unsigned long i = (k * step) % NPAGES;
		if ((part < 4 && (int)(i % 4) != part) ||
		    (changed && (in_mib(i, MOVED_AT) || in_mib(i, UNMAPPED_AT))))
			continue;
		bad += check_page(area + i * PAGE_SIZE, i, changed && in_mib(i, DROPPED_AT));
	}
	return bad;
}

int main(int argc, char **argv)
{
	unsigned char *moved;
	pid_t kid;
	int bad = 0;

	test_init(argc, argv);
	seed = (uint64_t)time(NULL) * 2654435761ULL ^ (uint64_t)getpid();
	area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap of 256 MiB failed");
	for (unsigned long i = 0; i < NPAGES; i++)
		if (!never_written(i))
			fill_pattern(area + i * PAGE_SIZE, PAGE_SIZE, seed + i);
	test_msg("area %p, seed %#llx", (void *)area, (unsigned long long)seed);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		area[(NPAGES / 3) * PAGE_SIZE + 777] ^= 0x10;

	kid = test_fork();
	if (kid == 0)                          /* odd step: a permutation of the pages */
		_exit(check_pages(1, 40503, 0) ? 1 : 0);

	moved = mremap(area + MOVED_AT * PAGE_SIZE, MIB_PAGES * PAGE_SIZE, MIB_PAGES * PAGE_SIZE,
		       MREMAP_MAYMOVE | MREMAP_FIXED, area + SIZE + (64UL << 20));
	if (moved == MAP_FAILED)
		test_abort("mremap failed");
	if (madvise(area + DROPPED_AT * PAGE_SIZE, MIB_PAGES * PAGE_SIZE, MADV_DONTNEED))
		test_abort("madvise(DONTNEED) failed");
	if (munmap(area + UNMAPPED_AT * PAGE_SIZE, MIB_PAGES * PAGE_SIZE))
		test_abort("munmap failed");
	for (unsigned long j = MIB_PAGES; j-- > 0 && bad < 8;)
		bad += check_page(moved + j * PAGE_SIZE, MOVED_AT + j, 0);
	bad += check_pages(4, 24577, 1);
	int code = test_reap(kid, "the child forked after the restore");
	if (code > 0)
		fail("the child forked after the restore found wrong pages (exit %d)", code);
	(void)bad;
	return test_finish();
}
