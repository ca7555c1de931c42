/*
 * precopy_writer: a task writing all the time, as pre-copy migration meets it.  It sweeps a
 * 32 MiB area, 4 pages per millisecond (a sweep takes about 2 s, so a pre-dump round finds some
 * pages written since the last and some not, and the task writes on while the round copies),
 * writing the sweep number into the first and last word of every page.  A sweep visits the pages
 * in a scattered order (page i*STRIDE mod NPAGES at step i), so the pages written between two
 * rounds are thousands of separate runs, not one: at any instant the pages of steps below the
 * current step hold sweep n and the others sweep n-1.
 * A page restored from an older pre-dump round (a write the tracking did not see) breaks that
 * staircase; after SIGTERM the test checks it.  ZDTM_BREAK makes one page stale on purpose.
 */
#include "lib/zdtmtst.h"

#include <sys/mman.h>
#include <time.h>

#define NPAGES 8192
#define STRIDE 1031                      /* odd: i*STRIDE mod NPAGES visits every page */

static volatile uint64_t *area;
static volatile uint64_t sweep = 1;
static volatile int step;                /* the sweep's position: page step*STRIDE mod NPAGES */

#define WORD(p, i) area[(size_t)(p) * (PAGE_SIZE / 8) + (i)]

static void write_page(int p, uint64_t n)
{
	WORD(p, 0) = n;
	WORD(p, PAGE_SIZE / 8 - 1) = n ^ 0x5a5a5a5a5a5a5a5aULL;
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000 * 1000};
	int bad = 0;

	test_init(argc, argv);
	area = mmap(NULL, (size_t)NPAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap failed");
	for (int p = 0; p < NPAGES; p++)
		write_page(p, 0);
	test_daemon();

	while (test_go()) {
		for (step = 0; step < NPAGES && test_go(); step++) {
			write_page(step * STRIDE % NPAGES, sweep);
			if (step % 4 == 3)
				nanosleep(&ms, NULL);
		}
		if (step == NPAGES) {
			step = 0;
			sweep++;
		}
	}
	/* the pages of steps [0, step) hold sweep, the others sweep - 1 */
	if (zdtm_break)
		WORD(NPAGES / 2, 0) -= 2;
	for (int i = 0; i < NPAGES; i++) {
		int p = i * STRIDE % NPAGES;
		uint64_t want = i < step ? sweep : sweep - 1;
		uint64_t got = WORD(p, 0), tail = WORD(p, PAGE_SIZE / 8 - 1) ^ 0x5a5a5a5a5a5a5a5aULL;
		if ((got != want || tail != want) && bad++ < 8)
			fail("page %d holds sweep %llu/%llu, not %llu (the sweep was at step %d of sweep %llu)", p,
			     (unsigned long long)got, (unsigned long long)tail, (unsigned long long)want, step,
			     (unsigned long long)sweep);
	}
	test_msg("%llu sweeps", (unsigned long long)sweep);
	return test_finish();
}
