/*
 * dirtymem: memory that keeps changing between dumps.  Every millisecond the test rewrites one
 * pseudo-randomly chosen page of a 16 MiB area with data derived from the page number and that
 * page's generation, and records the generation.  With several iterations each dump sees other
 * pages changed; after SIGTERM every page must hold the data of its recorded generation (a stale
 * page from an older image or a page lost on the way shows up here).
 */
#include "lib/zdtmtst.h"

#include <sys/mman.h>
#include <time.h>

#define NPAGES 4096

static unsigned char *area;
static uint32_t gen[NPAGES];
static uint64_t writes;

static uint64_t page_seed(int p) { return ((uint64_t)p << 32) ^ (uint64_t)gen[p] * 0x9e3779b97f4a7c15ULL; }

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000 * 1000};
	uint64_t rnd = 0x1234567;
	int bad = 0;

	test_init(argc, argv);
	area = mmap(NULL, NPAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap failed");
	for (int p = 0; p < NPAGES; p++)
		fill_pattern(area + p * PAGE_SIZE, PAGE_SIZE, page_seed(p));
	test_daemon();

	while (test_go()) {
		int p = (int)(xorshift64(&rnd) % NPAGES);
		gen[p]++;
		fill_pattern(area + p * PAGE_SIZE, PAGE_SIZE, page_seed(p));
		writes++;
		nanosleep(&ms, NULL);
	}
	if (zdtm_break)
		gen[17]++;
	for (int p = 0; p < NPAGES; p++)
		if (check_pattern(area + p * PAGE_SIZE, PAGE_SIZE, page_seed(p)) >= 0 && bad++ < 8)
			fail("page %d does not hold generation %u", p, gen[p]);
	test_msg("%llu page writes", (unsigned long long)writes);
	return test_finish();
}
