/*
 * mem256: 256 MiB of pseudo-random data.  Every 16th MiB is never written (it must read back as
 * zeros); the second half of the area asks for transparent huge pages.  After SIGTERM the data
 * is generated again from the seed and compared word by word, and a checksum taken when the test
 * was ready must match too.
 */
#include "lib/zdtmtst.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE (256UL << 20)
#define CHUNK (1UL << 20)

static uint64_t seed;
static uint64_t sum_at_ready;
static unsigned char *area;

static int is_zero_chunk(unsigned long c) { return c % 16 == 5; }

static uint64_t checksum(void)
{
	const uint64_t *w = (const uint64_t *)area;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (unsigned long i = 0; i < SIZE / 8; i++)
		h = (h ^ w[i]) * 0x100000001b3ULL;
	return h;
}

static void check_chunks(void)
{
	for (unsigned long c = 0; c < SIZE / CHUNK; c++) {
		unsigned char *p = area + c * CHUNK;
		long bad;
		if (is_zero_chunk(c)) {
			for (unsigned long i = 0; i < CHUNK; i++)
				if (p[i]) {
					fail("never-written MiB %lu has a non-zero byte at +%lu", c, i);
					break;
				}
			continue;
		}
		bad = check_pattern(p, CHUNK, seed + c);
		if (bad >= 0)
			fail("MiB %lu differs at +%ld (page %lu of the area)", c, bad,
			     (c * CHUNK + (unsigned long)bad) / PAGE_SIZE);
		if (test_failed() > 8)
			break;
	}
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	seed = (uint64_t)time(NULL) * 2654435761ULL ^ (uint64_t)getpid();
	area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap of 256 MiB failed");
	madvise(area + SIZE / 2, SIZE / 2, MADV_HUGEPAGE);
	for (unsigned long c = 0; c < SIZE / CHUNK; c++)
		if (!is_zero_chunk(c))
			fill_pattern(area + c * CHUNK, CHUNK, seed + c);
	sum_at_ready = checksum();
	test_msg("area %p, seed %#llx, checksum %#llx", (void *)area, (unsigned long long)seed,
		 (unsigned long long)sum_at_ready);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		area[SIZE - 12345] ^= 0x40;
	if (checksum() != sum_at_ready)
		fail("checksum of the 256 MiB changed");
	check_chunks();
	return test_finish();
}
