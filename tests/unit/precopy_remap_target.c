/* Target of test_predump.py: memory that changes shape while pre-dump rounds copy it after the
 * tree resumed.  Run as `precopy_remap_target OUTFILE`; writes "ready", then: area B, filled
 * once, flips between PROT_NONE and PROT_READ every 50 us (a round reading it after the resume
 * may meet either); and every 2 ms in turn area A is unmapped and mapped again at the same
 * address and filled with the turn's number, or area C is either zapped (MADV_DONTNEED: zeros)
 * or filled.  A round that lists a page while frozen may find it unmapped, PROT_NONE or zapped
 * when it reads it.  On SIGTERM every page must
 * hold what the last turn put there: it writes PASS or FAIL.  ZDTM_BREAK=1 damages a page of B.
 * (Not a zdtm test: the harness compares the VMAs with a snapshot taken before the rounds.) */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096UL
static volatile sig_atomic_t term;
static const char *outfile;
static int failed;

static void on_term(int s) { (void)s; term = 1; }

static void say(const char *fmt, ...)
{
	FILE *f = fopen(outfile, "a");
	va_list ap;
	if (!f)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

#define fail(...) (failed = 1, say("FAIL: " __VA_ARGS__), say("\n"))

#define PAGES 256
#define LEN ((size_t)PAGES * PAGE_SIZE)

static void fill(char *p, uint64_t turn)
{
	for (size_t i = 0; i < PAGES; i++)
		*(uint64_t *)(p + i * PAGE_SIZE) = turn * 1000 + i;
}

static int check(const char *name, const char *p, uint64_t turn)
{
	for (size_t i = 0; i < PAGES; i++) {
		uint64_t got = *(const uint64_t *)(p + i * PAGE_SIZE), want = turn * 1000 + i;
		if (got != want) {
			fail("%s page %zu holds %llu, not %llu", name, i, (unsigned long long)got, (unsigned long long)want);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct timespec flip = {0, 50 * 1000};
	uint64_t turn = 0, a_turn = 0, c_turn = 0;
	int b_open = 0;
	char *a, *b, *c;

	outfile = argv[1];
	signal(SIGTERM, on_term);
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	c = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED)
		return 1;
	fill(a, 0), fill(b, 0), fill(c, 0);
	mprotect(b, LEN, PROT_NONE);
	say("ready\n");

	while (!term) {
		turn++;
		b_open = !b_open;       /* B: never written again, only flipped, every 50 us */
		mprotect(b, LEN, b_open ? PROT_READ : PROT_NONE);
		nanosleep(&flip, NULL);
		if (turn % 40)
			continue;
		if (turn % 80) {
			if (munmap(a, LEN) || mmap(a, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
						   -1, 0) != a)
				return 1;
			fill(a, a_turn = turn);
		} else if (turn % 160 == 0) {
			madvise(c, LEN, MADV_DONTNEED);
			c_turn = (uint64_t)-1;
		} else {
			fill(c, c_turn = turn);
		}
	}
	mprotect(b, LEN, PROT_READ | PROT_WRITE);
	if (getenv("ZDTM_BREAK"))
		b[5 * PAGE_SIZE] ^= 1;
	check("A", a, a_turn);
	check("B", b, 0);
	if (c_turn == (uint64_t)-1) {
		for (size_t i = 0; i < LEN; i++)
			if (c[i]) {
				fail("C byte %zu is %d after MADV_DONTNEED, not 0", i, c[i]);
				break;
			}
	} else {
		check("C", c, c_turn);
	}
	if (!failed)
		say("PASS (%llu turns)\n", (unsigned long long)turn);
	return 0;
}
