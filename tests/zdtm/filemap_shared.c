/*
 * filemap_shared: a shared mapping of a regular file, written before the dump and after the
 * restore.  After SIGTERM the mapping must still be the file's pages: data written through the
 * mapping before the dump is there, a write through the mapping reaches the file (pread sees it),
 * and a pwrite to the file shows in the mapping.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 8
#define FILE_SEED 0xabcdef01ULL
#define BEFORE_SEED 0x1111ULL
#define AFTER_SEED 0x2222ULL
#define PWRITE_SEED 0x3333ULL

static char *path;
static unsigned char *map;
static unsigned char buf[NPAGES * PAGE_SIZE];

static uint64_t seed_of(int pg, int after)
{
	if (pg == 1)
		return BEFORE_SEED;
	if (after && pg == 5)
		return AFTER_SEED;
	if (after && pg == 6)
		return PWRITE_SEED;
	return FILE_SEED + (uint64_t)pg;
}

static void check_all(const unsigned char *data, const char *what, int after)
{
	for (int pg = 0; pg < NPAGES; pg++) {
		long bad = check_pattern(data + pg * PAGE_SIZE, PAGE_SIZE, seed_of(pg, after));
		if (bad >= 0)
			fail("%s page %d differs at +%ld", what, pg, bad);
	}
}

int main(int argc, char **argv)
{
	int fd;

	test_init(argc, argv);
	path = test_path(".shared");
	fd = test_pattern_file(path, buf, NPAGES, FILE_SEED);
	map = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		test_abort("mmap of %s failed", path);
	fill_pattern(map + PAGE_SIZE, PAGE_SIZE, BEFORE_SEED);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		map[4 * PAGE_SIZE] ^= 1;
	check_all(map, "mapping (before any new write)", 0);

	fill_pattern(map + 5 * PAGE_SIZE, PAGE_SIZE, AFTER_SEED);
	if (msync(map, sizeof(buf), MS_SYNC))
		fail("msync: %s", strerror(errno));
	fill_pattern(buf + 6 * PAGE_SIZE, PAGE_SIZE, PWRITE_SEED);
	fd = open(path, O_RDWR);
	if (fd < 0 || pwrite(fd, buf + 6 * PAGE_SIZE, PAGE_SIZE, 6 * PAGE_SIZE) != (ssize_t)PAGE_SIZE) {
		fail("pwrite to %s: %s", path, strerror(errno));
		return test_finish();
	}
	if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		fail("pread of %s: %s", path, strerror(errno));
	close(fd);
	check_all(buf, "file", 1);
	check_all(map, "mapping", 1);
	return test_finish();
}
