/*
 * filemap_zap: pages of a private file mapping zapped (MADV_DONTNEED) between pre-dump rounds.
 * Every page is written (copied on write) before the first round; once a pre-dump has armed the
 * mapping's write tracking ("uw" in its VmFlags) the test zaps pages: a zapped page of a tracked
 * file mapping keeps a write-protect marker and reads the file again, so a later round or the
 * final dump must neither save it nor take it from the round that had the written copy.
 * Page kinds (page % 4): 0 zapped, 1 zapped then read, 2 zapped then written anew, 3 untouched.
 * After SIGTERM: kinds 0 and 1 hold the file's data, 2 the new data, 3 the first data; the file
 * never saw a private write.  Without pre-dump rounds nothing is zapped (said in the outfile).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 64
#define FILE_SEED 0x5eed0000ULL
#define PRIV_SEED 0x9a9e0000ULL
#define AGAIN_SEED 0xa9a10000ULL

static unsigned char *area;
static unsigned char filebuf[NPAGES * PAGE_SIZE];
static int zapped;

static uint64_t expected_seed(int pg)
{
	if (!zapped)
		return PRIV_SEED + pg;
	switch (pg % 4) {
	case 0: case 1: return FILE_SEED + pg;
	case 2: return AGAIN_SEED + pg;
	default: return PRIV_SEED + pg;
	}
}

static int tracked(void)
{
	char flags[256];
	smaps_field(area, "VmFlags", flags, sizeof(flags));
	return strstr(flags, " uw") != NULL || strncmp(flags, "uw", 2) == 0;
}

static void zap(void)
{
	for (int pg = 0; pg < NPAGES; pg++) {
		unsigned char *p = area + pg * PAGE_SIZE;
		if (pg % 4 == 3)
			continue;
		if (madvise(p, PAGE_SIZE, MADV_DONTNEED))
			test_abort("madvise(MADV_DONTNEED) of page %d: %s", pg, strerror(errno));
		if (pg % 4 == 1)
			(void)*(volatile unsigned char *)p;       /* the file's page again, tracked */
		else if (pg % 4 == 2)
			fill_pattern(p, PAGE_SIZE, AGAIN_SEED + pg);
	}
	zapped = 1;
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 2 * 1000 * 1000};
	char *path;
	int fd;

	test_init(argc, argv);
	path = test_path(".zap");
	fd = test_pattern_file(path, filebuf, NPAGES, FILE_SEED);
	area = mmap(NULL, sizeof(filebuf), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (area == MAP_FAILED)
		test_abort("mmap of %s failed", path);
	for (int pg = 0; pg < NPAGES; pg++)
		fill_pattern(area + pg * PAGE_SIZE, PAGE_SIZE, PRIV_SEED + pg);
	test_daemon();

	while (test_go()) {
		if (!zapped && tracked())
			zap();
		nanosleep(&ms, NULL);
	}
	if (zdtm_break)
		area[4 * PAGE_SIZE + 9] ^= 1;       /* a zapped page (or, unzapped, a written one) */
	for (int pg = 0, bad = 0; pg < NPAGES; pg++)
		if (check_pattern(area + pg * PAGE_SIZE, PAGE_SIZE, expected_seed(pg)) >= 0 && bad++ < 8)
			fail("page %d (kind %d, %s) does not hold its data", pg, pg % 4, zapped ? "zapped" : "not zapped");
	check_pattern_file(path, filebuf, NPAGES, FILE_SEED, "a private write reached the file");
	test_msg("%s", zapped ? "pages zapped after a pre-dump armed the tracking" : "no pre-dump round: nothing zapped");
	return test_finish();
}
