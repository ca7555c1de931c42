/*
 * shmem_remap: MAP_SHARED|MAP_ANONYMOUS objects whose mappings no longer cover them from offset 0
 * to the end.  A (8 pages, shared with a child): the parent unmapped its first 2 pages, so its
 * VMA starts at object offset 2 pages; the child maps all of A.  B (8 pages, shared with the
 * child): the parent shrank it to 6 pages with mremap and unmapped page 2, so two VMAs of the
 * parent map B (offsets 0 and 3 pages); the child moved its whole mapping elsewhere with mremap.
 * C (4 pages, the parent's alone) was shrunk to 2 pages with mremap: pages 2-3 live on in the
 * object.  D (4 pages, the parent's alone) lost its first page (its VMA starts at offset 1 page).
 * After SIGTERM: every maps line (range, perms, offset) of parent and child is as before, every
 * page holds its data, C grown back with mremap shows its pages 2-3, and A and B are still shared:
 * each side sees the other's writes.
 */
#include "lib/zdtmtst.h"

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define P PAGE_SIZE
#define SEED_A 0xa000ULL
#define SEED_B 0xb000ULL
#define SEED_C 0xc000ULL
#define SEED_D 0xd000ULL
#define NLINES 5


static void fill_pages(char *p, int first, int n, uint64_t seed)
{
	for (int i = first; i < first + n; i++)
		fill_pattern(p + i * P, P, seed + i);
}

/* Pages first..first+n-1 of an object, seen at p (p = the object's page 0, maybe unmapped). */
static int check_pages(const char *who, const char *p, int first, int n, uint64_t seed)
{
	int bad = 0;
	for (int i = first; i < first + n; i++)
		if (check_pattern(p + i * P, P, seed + i) >= 0) {
			fail("%s: object page %d differs", who, i);
			bad = 1;
		}
	return bad;
}

static void *shared_anon(size_t len, uint64_t seed)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	fill_pages(p, 0, len / P, seed);
	return p;
}

static void lines(void *const *at, char (*out)[256], int n)
{
	for (int i = 0; i < n; i++)
		maps_line(at[i], out[i], sizeof(out[i]));
}

static int same_lines(const char *who, void *const *at, char (*before)[256], int n)
{
	char now[256];
	int bad = 0;
	for (int i = 0; i < n; i++) {
		maps_line(at[i], now, sizeof(now));
		if (strcmp(now, before[i])) {
			fail("%s: maps line \"%s\", was \"%s\"", who, now, before[i]);
			bad = 1;
		}
	}
	return bad;
}

/* The child: all of A where it was, all of B moved to a place of its own. */
static int child(char *a, char *b, int ready_fd)
{
	char before[2][256];
	void *at[2];
	char *spot = mmap(NULL, 10 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *nb = mremap(b, 8 * P, 8 * P, MREMAP_MAYMOVE | MREMAP_FIXED, spot + P);
	int bad = 0;

	if (spot == MAP_FAILED || nb == MAP_FAILED)
		return 10;
	at[0] = a;
	at[1] = nb;
	lines(at, before, 2);
	if (write(ready_fd, "r", 1) != 1)
		return 11;
	close(ready_fd);
	test_usr1_wait();
	bad |= same_lines("child", at, before, 2);
	/* the parent wrote A page 3 and B page 4 after the restore */
	bad |= check_pages("child's A", a, 0, 3, SEED_A) | check_pages("child's A", a, 4, 4, SEED_A);
	bad |= check_pattern(a + 3 * P, P, 0x3333) >= 0;
	bad |= check_pages("child's B", nb, 0, 4, SEED_B) | check_pages("child's B", nb, 5, 3, SEED_B);
	bad |= check_pattern(nb + 4 * P, P, 0x4444) >= 0;
	fill_pattern(a + 5 * P, P, 0x5555);
	fill_pattern(nb + 1 * P, P, 0x1111);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	char before[NLINES][256];
	void *at[NLINES];
	char *a, *b, *c, *d, byte;
	int ready[2], status;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	a = shared_anon(8 * P, SEED_A);
	b = shared_anon(8 * P, SEED_B);
	if (pipe(ready))
		test_abort("pipe: %s", strerror(errno));
	kid = test_fork();
	if (kid == 0) {
		close(ready[0]);
		_exit(child(a, b, ready[1]));
	}
	close(ready[1]);
	if (read(ready[0], &byte, 1) != 1)
		test_abort("the child did not get ready");
	close(ready[0]);
	/* the parent's views: A from page 2; B shrunk to 6 pages with a hole at page 2 */
	if (munmap(a, 2 * P) || mremap(b, 8 * P, 6 * P, 0) != b || munmap(b + 2 * P, P))
		test_abort("reshaping A and B: %s", strerror(errno));
	c = shared_anon(4 * P, SEED_C);
	if (mremap(c, 4 * P, 2 * P, 0) != c)
		test_abort("shrinking C: %s", strerror(errno));
	d = shared_anon(4 * P, SEED_D);
	if (munmap(d, P))
		test_abort("munmap of D: %s", strerror(errno));
	at[0] = a + 2 * P;
	at[1] = b;
	at[2] = b + 3 * P;
	at[3] = c;
	at[4] = d + P;
	lines(at, before, NLINES);
	for (int i = 0; i < NLINES; i++)
		test_msg("%s", before[i]);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)   /* D's page 1 becomes a page of another object */
		mmap(d + P, P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	same_lines("parent", at, before, NLINES);
	check_pages("A", a, 2, 6, SEED_A);
	check_pages("B", b, 0, 2, SEED_B);
	check_pages("B", b, 3, 3, SEED_B);
	check_pages("C", c, 0, 2, SEED_C);
	check_pages("D", d, 1, 3, SEED_D);
	/* C grown back: the object kept its pages 2-3 */
	c = mremap(c, 2 * P, 4 * P, MREMAP_MAYMOVE);
	if (c == MAP_FAILED)
		fail("growing C back: %s", strerror(errno));
	else
		check_pages("C grown back", c, 2, 2, SEED_C);
	/* still shared with the child, both ways */
	fill_pattern(a + 3 * P, P, 0x3333);
	fill_pattern(b + 4 * P, P, 0x4444);
	kill(kid, SIGUSR1);
	if (waitpid(kid, &status, 0) != kid || status)
		fail("the child saw a different A or B (status 0x%x)", status);
	if (check_pattern(a + 5 * P, P, 0x5555) >= 0)
		fail("the child's write to A page 5 did not show in the parent");
	if (check_pattern(b + 1 * P, P, 0x1111) >= 0)
		fail("the child's write to B page 1 did not show in the parent");
	return test_finish();
}
