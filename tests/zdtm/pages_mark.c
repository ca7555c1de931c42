/*
 * pages_mark: a parent and its child, each with 4 MiB of private anonymous memory in which every
 * page starts with a marker naming its owner and its number ("PAGES_MARK P page 0042 ") followed
 * by a pattern of both.  The markers let a test find a page's bytes in pages-N.img and damage
 * them (test_integrity_inline.py); after SIGTERM each process checks every byte of its pages.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 1024
#define MARK_LEN 24

static unsigned char *pages;

static unsigned char pattern_byte(char role, int page, int i)
{
	return (unsigned char)(page * 131 + i * 7 + role);
}

static void fill(char role)
{
	for (int pg = 0; pg < NPAGES; pg++) {
		unsigned char *p = pages + (size_t)pg * PAGE_SIZE;
		char mark[MARK_LEN + 1];

		snprintf(mark, sizeof(mark), "PAGES_MARK %c page %04d ", role, pg);
		memcpy(p, mark, MARK_LEN);
		for (int i = MARK_LEN; i < PAGE_SIZE; i++)
			p[i] = pattern_byte(role, pg, i);
	}
}

/* The first page that differs, or -1. */
static int check(char role)
{
	for (int pg = 0; pg < NPAGES; pg++) {
		unsigned char *p = pages + (size_t)pg * PAGE_SIZE;
		char mark[MARK_LEN + 1];

		snprintf(mark, sizeof(mark), "PAGES_MARK %c page %04d ", role, pg);
		if (memcmp(p, mark, MARK_LEN))
			return pg;
		for (int i = MARK_LEN; i < PAGE_SIZE; i++)
			if (p[i] != pattern_byte(role, pg, i))
				return pg;
	}
	return -1;
}

int main(int argc, char **argv)
{
	pid_t kid;
	int bad, ready[2];
	char byte;

	test_init(argc, argv);
	pages = mmap(NULL, (size_t)NPAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pages == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	test_usr1_init();
	if (pipe(ready))
		test_abort("pipe: %s", strerror(errno));
	kid = test_fork();
	if (kid == 0) {
		fill('C');
		close(ready[0]);
		if (write(ready[1], "r", 1) != 1)       /* filled: the dump may come */
			_exit(2);
		close(ready[1]);
		test_usr1_wait();
		_exit(check('C') < 0 ? 0 : 1);
	}
	fill('P');
	close(ready[1]);
	if (read(ready[0], &byte, 1) != 1)
		test_abort("the child died before filling its pages");
	close(ready[0]);
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		pages[5 * PAGE_SIZE + 100] ^= 1;
	kill(kid, SIGUSR1);
	if ((bad = check('P')) >= 0)
		fail("parent page %d differs", bad);
	if (test_reap(kid, "child") != 0)
		fail("the child's pages differ");
	return test_finish();
}
