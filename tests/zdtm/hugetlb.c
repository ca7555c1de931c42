/*
 * hugetlb: MAP_HUGETLB memory of the default huge page size.  A shared mapping of 1 huge page,
 * which a child maps too, and a private one of 3 huge pages (the first written whole, the second
 * only in its first 4 KiB, the third never touched) and a shared one only the parent maps.  After SIGTERM each mapping must still be
 * hugetlb memory of the same page size (smaps KernelPageSize, VmFlags with ht, the maps line but
 * for device and inode) and its data; the private one the same huge pages in use (Private_Hugetlb);
 * the shared one must still be shared with the child, both ways.
 * The test makes the huge pages it needs (vm.nr_hugepages) and gives them back at its end.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"
#define WANT 6                  /* 3 private + 2 shared, and one to spare */
#define SEED_PRIV 0x4b1dULL
#define SEED_SHARED 0x5ea1ULL
#define SEED_OWN 0x0ffULL

static unsigned long huge;      /* bytes */
static char *priv, *shared, *own;
static long nr_before = -1;     /* vm.nr_hugepages to give back, -1: untouched */
static const char *fields[] = {"KernelPageSize", "MMUPageSize", "VmFlags", "Private_Hugetlb", "Shared_Hugetlb"};
#define NFIELDS (int)(sizeof(fields) / sizeof(fields[0]))
/* The *_Hugetlb counts say which huge pages a task has touched (mapped in its page tables): checked
 * for the private mapping (the untouched page must stay unallocated); in the shared one they
 * depend on which task touched the page since, so only the first fields count there. */
#define NFIELDS_ALL 3
static char before[3][NFIELDS][256], line_before[3][256];

/* 4 KiB page i of [p, p + len) holds the pattern of seed + i: any page can be checked alone. */
static void fill_pages(char *p, unsigned long len, uint64_t seed)
{
	for (unsigned long i = 0; i < len / PAGE_SIZE; i++)
		fill_pattern(p + i * PAGE_SIZE, PAGE_SIZE, seed + i);
}

static int pages_differ(const char *p, unsigned long first, unsigned long n, uint64_t seed)
{
	for (unsigned long i = first; i < first + n; i++)
		if (check_pattern(p + i * PAGE_SIZE, PAGE_SIZE, seed + i) >= 0)
			return 1;
	return 0;
}

static long meminfo(const char *key)
{
	static char buf[8192];
	char *p;
	if (read_whole("/proc/meminfo", buf, sizeof(buf)) < 0 || !(p = strstr(buf, key)))
		return -1;
	return strtol(p + strlen(key), NULL, 10);
}

static long read_long(const char *path)
{
	char buf[64];
	return read_whole(path, buf, sizeof(buf)) < 0 ? -1 : strtol(buf, NULL, 10);
}

static int write_long(const char *path, long v)
{
	char buf[64];
	int fd = open(path, O_WRONLY), n = snprintf(buf, sizeof(buf), "%ld\n", v);
	int ok = fd >= 0 && write(fd, buf, (size_t)n) == n;
	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* WANT free huge pages of the default size, raising vm.nr_hugepages if need be; the test is
 * skipped (naming why) when the kernel has none or cannot make them.  ZDTM_NR_HUGEPAGES names
 * another sysctl file: the harness's own tests use a missing one to see the skip. */
static void get_huge_pages(void)
{
	const char *sysctl = getenv("ZDTM_NR_HUGEPAGES") ? getenv("ZDTM_NR_HUGEPAGES") : NR_HUGEPAGES;
	long free_pages = meminfo("HugePages_Free:"), nr = read_long(sysctl);
	huge = (unsigned long)meminfo("Hugepagesize:") * 1024;
	if (free_pages < 0 || nr < 0 || !huge)
		test_skip("no hugetlb pages in this kernel (no HugePages_Free in /proc/meminfo or no %s)", sysctl);
	if (free_pages >= WANT)
		return;
	if (write_long(sysctl, nr + WANT - free_pages))
		test_skip("%d free huge pages wanted, %ld free, and %s cannot be raised: %s", WANT, free_pages,
			  sysctl, strerror(errno));
	nr_before = nr;
	if (meminfo("HugePages_Free:") < WANT) {
		write_long(sysctl, nr);
		test_skip("%d huge pages of %lu KiB wanted, the kernel could not make them", WANT, huge >> 10);
	}
}

static void record(int i, const void *addr)
{
	maps_line(addr, line_before[i], sizeof(line_before[i]));
	test_msg("%s", line_before[i]);
	for (int f = 0; f < NFIELDS; f++) {
		smaps_field(addr, fields[f], before[i][f], sizeof(before[i][f]));
		test_msg("  %s: %s", fields[f], before[i][f]);
	}
}

static void compare(int i, const void *addr, const char *what)
{
	char now[256];
	maps_line(addr, now, sizeof(now));
	if (strcmp(now, line_before[i]))
		fail("%s: maps line \"%s\", was \"%s\"", what, now, line_before[i]);
	for (int f = 0; f < NFIELDS; f++) {
		if (i > 0 && f >= NFIELDS_ALL)
			break;
		smaps_field(addr, fields[f], now, sizeof(now));
		if (strcmp(now, before[i][f]))
			fail("%s: %s \"%s\", was \"%s\"", what, fields[f], now, before[i][f]);
	}
}

int main(int argc, char **argv)
{
	pid_t kid;

	test_init(argc, argv);
	get_huge_pages();
	test_usr1_init();
	shared = mmap(NULL, huge, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (shared == MAP_FAILED)
		test_abort("mmap MAP_HUGETLB|MAP_SHARED: %s", strerror(errno));
	fill_pages(shared, huge, SEED_SHARED);
	kid = test_fork();
	if (kid == 0) {
		test_usr1_wait();
		/* the parent changed the first page after the restore; the child changes the last */
		int bad = check_pattern(shared, PAGE_SIZE, 0x1111) >= 0 ||
			  pages_differ(shared, 1, huge / PAGE_SIZE - 1, SEED_SHARED);
		fill_pattern(shared + huge - PAGE_SIZE, PAGE_SIZE, 0x2222);
		_exit(bad);
	}
	/* after the fork: a child's copy of it would need huge pages of its own at restore */
	priv = mmap(NULL, 3 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (priv == MAP_FAILED)
		test_abort("mmap MAP_HUGETLB|MAP_PRIVATE: %s", strerror(errno));
	fill_pages(priv, huge + PAGE_SIZE, SEED_PRIV);
	own = mmap(NULL, huge, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (own == MAP_FAILED)
		test_abort("mmap MAP_HUGETLB|MAP_SHARED: %s", strerror(errno));
	fill_pages(own, huge, SEED_OWN);
	record(0, priv);
	record(1, shared);
	record(2, own);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)    /* the private mapping's first huge page becomes ordinary memory */
		mmap(priv, huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	compare(0, priv, "private");
	compare(1, shared, "shared");
	compare(2, own, "shared, the parent's alone");
	if (pages_differ(own, 0, huge / PAGE_SIZE, SEED_OWN))
		fail("the parent's own shared hugetlb mapping lost its data");
	if (pages_differ(priv, 0, huge / PAGE_SIZE + 1, SEED_PRIV))
		fail("the private hugetlb mapping lost its data");
	for (unsigned long i = huge + PAGE_SIZE; i < 3 * huge; i += 512)
		if (priv[i]) {
			fail("private hugetlb byte +%lu is not zero", i);
			break;
		}
	if (pages_differ(shared, 0, huge / PAGE_SIZE, SEED_SHARED))
		fail("the shared hugetlb mapping lost its data");
	fill_pattern(shared, PAGE_SIZE, 0x1111);
	kill(kid, SIGUSR1);
	int code = test_reap(kid, "the child");
	if (code > 0)
		fail("the child saw other data in the shared hugetlb mapping (exit %d)", code);
	if (check_pattern(shared + huge - PAGE_SIZE, PAGE_SIZE, 0x2222) >= 0)
		fail("the child's write to the shared hugetlb mapping did not show in the parent");
	munmap(priv, 3 * huge);
	munmap(shared, huge);
	munmap(own, huge);
	if (nr_before >= 0)
		write_long(NR_HUGEPAGES, nr_before);
	return test_finish();
}
