/*
 * filemap_private: a private (copy-on-write) mapping of a regular file, some pages written after
 * mmap and the others only read from the file, plus a read-only private mapping of the same file
 * at a page offset.  After SIGTERM: written pages hold the new data, the others the file's data,
 * the file itself never saw the private writes, and the maps lines name the file with the right
 * offsets.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 16
#define RO_OFF 4
#define RO_PAGES 6
#define FILE_SEED 0x1234567ULL
#define PRIV_SEED 0x7654321ULL

static char *path;
static unsigned char *rw, *ro;
static unsigned char filebuf[NPAGES * PAGE_SIZE];
static char maps[262144];

static int written(int page) { return page == 2 || page == 3 || page == 7 || page == 15; }

static void check_maps_line(const void *addr, const char *perms, unsigned long offset)
{
	char want[64], *line;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0 || !(line = strstr(maps, want))) {
		fail("no maps line at %p", addr);
		return;
	}
	char p[8], path_now[4096] = "";
	unsigned long s, e, off;
	if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %4095s", &s, &e, p, &off, path_now) < 4 ||
	    strcmp(p, perms) || off != offset || strcmp(path_now, path))
		fail("maps line of %p is \"%.*s\"; want perms %s offset %lx file %s", addr,
		     (int)strcspn(line, "\n"), line, perms, offset, path);
}

static void check_pages(void)
{
	for (int pg = 0; pg < NPAGES; pg++) {
		unsigned char *p = rw + pg * PAGE_SIZE;
		long bad = written(pg) ? check_pattern(p, PAGE_SIZE, PRIV_SEED + pg)
				       : check_pattern(p, PAGE_SIZE, FILE_SEED + pg);
		if (bad >= 0)
			fail("private page %d (%s) differs at +%ld", pg, written(pg) ? "written" : "from file", bad);
	}
	for (int pg = 0; pg < RO_PAGES; pg++)
		if (check_pattern(ro + pg * PAGE_SIZE, PAGE_SIZE, FILE_SEED + RO_OFF + pg) >= 0)
			fail("read-only mapping page %d differs from file page %d", pg, RO_OFF + pg);
}

int main(int argc, char **argv)
{
	int fd;

	test_init(argc, argv);
	path = test_path(".priv");
	fd = test_pattern_file(path, filebuf, NPAGES, FILE_SEED);
	rw = mmap(NULL, sizeof(filebuf), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ro = mmap(NULL, RO_PAGES * PAGE_SIZE, PROT_READ, MAP_PRIVATE, fd, RO_OFF * PAGE_SIZE);
	close(fd);
	if (rw == MAP_FAILED || ro == MAP_FAILED)
		test_abort("mmap of %s failed", path);
	for (int pg = 0; pg < NPAGES; pg++)
		if (written(pg))
			fill_pattern(rw + pg * PAGE_SIZE, PAGE_SIZE, PRIV_SEED + pg);
		else
			(void)*(volatile unsigned char *)(rw + pg * PAGE_SIZE); /* read: page cache page */
	check_pages();
	if (test_failed())
		test_abort("mapping wrong before any dump");
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		rw[3 * PAGE_SIZE + 5] ^= 1;
	check_maps_line(rw, "rw-p", 0);
	check_maps_line(ro, "r--p", RO_OFF * PAGE_SIZE);
	check_pages();
	check_pattern_file(path, filebuf, NPAGES, FILE_SEED, "a private write reached the file");
	/* A private write after the restore must not reach the file either. */
	rw[0] ^= 0xff;
	check_pattern_file(path, filebuf, NPAGES, FILE_SEED, "a private write reached the file");
	return test_finish();
}
