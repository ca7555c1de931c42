/*
 * maps: dozens of mappings with varied protections and flags inside one reserved range: private
 * and shared anonymous, read-only, read-write, read-exec, PROT_NONE (with data written before it
 * was made inaccessible), never-touched (must read as zeros), a mapping split in three by
 * mprotect, PROT_NONE guard pages and unmapped holes between them.  After SIGTERM the
 * /proc/self/maps lines of the range must be the same as before, the real protections must hold
 * (reads and writes fault where they should), and every page must hold its data.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define NREG 48
enum kind { RW, RO, NONE, UNTOUCHED, SHARED_RW, RX, SPLIT, SHARED_RO, NKINDS };

struct region {
	char *addr;
	unsigned long npages;
	enum kind kind;
};

static struct region regs[NREG];
static char *base;
static unsigned long total;
static char maps_before[262144], maps_after[262144], raw[262144];

static uint64_t seed_of(int i) { return 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1); }

static int final_prot(enum kind k)
{
	switch (k) {
	case RO: case SHARED_RO: return PROT_READ;
	case NONE: return PROT_NONE;
	case RX: return PROT_READ | PROT_EXEC;
	default: return PROT_READ | PROT_WRITE;
	}
}

/* The /proc/self/maps lines inside [base, base+total), with the inode of shmem lines blanked. */
static void maps_of_range(char *out, size_t size)
{
	char *line, *save = NULL;
	size_t used = 0;

	out[0] = 0;
	if (read_whole("/proc/self/maps", raw, sizeof(raw)) < 0)
		test_abort("cannot read /proc/self/maps");
	for (line = strtok_r(raw, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long s, e;
		char perms[8], off[32], dev[16], path[512] = "";
		unsigned long ino;
		if (sscanf(line, "%lx-%lx %7s %31s %15s %lu %511[^\n]", &s, &e, perms, off, dev, &ino, path) < 6)
			continue;
		if (s < (unsigned long)base || e > (unsigned long)base + total)
			continue;
		if (strstr(path, "/dev/zero") || strstr(path, "SYSV"))
			ino = 0, strcpy(dev, "shmem");
		used += (size_t)snprintf(out + used, size - used, "%lx-%lx %s %s %s %lu %s\n", s, e, perms,
					 off, dev, ino, path);
	}
}

static void setup(void)
{
	unsigned long off = 1;

	for (int i = 0; i < NREG; i++) {
		regs[i].kind = (enum kind)(i % NKINDS);
		regs[i].npages = regs[i].kind == SPLIT ? 3 : 1 + (unsigned long)(i % 4);
		total += regs[i].npages + 1;
	}
	total = (total + 2) * PAGE_SIZE;
	base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		test_abort("reserve %lu bytes failed", total);

	for (int i = 0; i < NREG; i++) {
		struct region *r = &regs[i];
		int shared = r->kind == SHARED_RW || r->kind == SHARED_RO;
		size_t len = r->npages * PAGE_SIZE;
		int next_none = i + 1 < NREG && regs[i + 1].kind == NONE;

		r->addr = base + off * PAGE_SIZE;
		if (mmap(r->addr, len, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_ANONYMOUS | (shared ? MAP_SHARED : MAP_PRIVATE), -1, 0) != r->addr)
			test_abort("mmap of region %d failed", i);
		if (r->kind != UNTOUCHED)
			fill_pattern(r->addr, len, seed_of(i));
		if (mprotect(r->addr, len, final_prot(r->kind)))
			test_abort("mprotect of region %d failed", i);
		if (r->kind == SPLIT && mprotect(r->addr + PAGE_SIZE, PAGE_SIZE, PROT_READ))
			test_abort("mprotect of the middle of region %d failed", i);
		off += r->npages;
		/* The gap after it: a PROT_NONE guard page, or a hole.  PROT_NONE regions get holes on
		 * both sides, so that no two PROT_NONE VMAs touch (whether they merge would depend on
		 * kernel accounting flags, not on the test's state). */
		if (r->kind == NONE || next_none || i % 2)
			munmap(base + off * PAGE_SIZE, PAGE_SIZE);
		off++;
	}
}

static void check_protections(int i)
{
	struct region *r = &regs[i];
	int prot = final_prot(r->kind);

	for (unsigned long p = 0; p < r->npages; p++) {
		char *a = r->addr + p * PAGE_SIZE;
		int pp = (r->kind == SPLIT && p == 1) ? PROT_READ : prot;
		int rd = probe_read(a), wr = probe_write(a);
		if (!!(pp & PROT_READ) == !!rd || !!(pp & PROT_WRITE) == !!wr)
			fail("region %d page %lu: read %s, write %s, but the protection is %d", i, p,
			     rd ? "faults" : "works", wr ? "faults" : "works", pp);
	}
}

static void check_content(int i)
{
	struct region *r = &regs[i];
	size_t len = r->npages * PAGE_SIZE;
	long bad;

	if (!(final_prot(r->kind) & PROT_READ) && mprotect(r->addr, len, PROT_READ)) {
		fail("region %d: mprotect(PROT_READ) to check it failed", i);
		return;
	}
	if (r->kind == UNTOUCHED) {
		for (size_t b = 0; b < len; b++)
			if (r->addr[b]) {
				fail("region %d (never written) has a non-zero byte at %zu", i, b);
				return;
			}
		return;
	}
	bad = check_pattern(r->addr, len, seed_of(i));
	if (bad >= 0)
		fail("region %d (kind %d) differs at byte %ld", i, r->kind, bad);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	setup();
	maps_of_range(maps_before, sizeof(maps_before));
	for (int i = 0; i < NREG; i++)
		check_protections(i);
	if (test_failed())
		test_abort("protections wrong before any dump");
	test_msg("%d regions in %lu KiB", NREG, total >> 10);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		mprotect(regs[RO].addr, PAGE_SIZE, PROT_READ | PROT_WRITE);
		regs[RW].addr[100] ^= 1;
	}
	maps_of_range(maps_after, sizeof(maps_after));
	if (strcmp(maps_before, maps_after)) {
		fail("the maps of the test range changed");
		test_text("maps before:\n");
		test_text(maps_before);
		test_text("maps after:\n");
		test_text(maps_after);
	}
	for (int i = 0; i < NREG; i++)
		check_protections(i);
	for (int i = 0; i < NREG; i++)
		check_content(i);
	return test_finish();
}
