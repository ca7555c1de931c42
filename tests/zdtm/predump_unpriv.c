/*
 * predump_unpriv: a task without any capability (uid/gid 65534) whose memory keeps changing, half
 * of it by the kernel: every millisecond one pseudo-randomly chosen page of a 4 MiB area is
 * rewritten, alternately by the task itself and by pread() from a file of patterned pages (a
 * write the kernel makes on the task's behalf), and its generation recorded.  Such a task may
 * not make a userfaultfd unless it asks for UFFD_USER_MODE_ONLY (vm.unprivileged_userfaultfd=0),
 * and pre-dump rounds must still see the kernel's writes.  After SIGTERM every page must hold the
 * data of its recorded generation.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 1024
#define FILE_PAGES 64
#define FILE_SEED 0xf11e0000ULL

static unsigned char *area;
static uint32_t gen[NPAGES];
static unsigned char filebuf[FILE_PAGES * PAGE_SIZE];

/* Odd generations come from the file (page (p + gen) % FILE_PAGES), even ones from the task. */
static uint64_t page_seed(int p)
{
	if (gen[p] & 1)
		return FILE_SEED + (p + gen[p]) % FILE_PAGES;
	return ((uint64_t)p << 32) ^ (uint64_t)gen[p] * 0x9e3779b97f4a7c15ULL;
}

static void write_page(int fd, int p)
{
	unsigned char *page = area + p * PAGE_SIZE;
	if (!(gen[p] & 1)) {
		fill_pattern(page, PAGE_SIZE, page_seed(p));
		return;
	}
	off_t off = (off_t)((p + gen[p]) % FILE_PAGES) * PAGE_SIZE;
	if (pread(fd, page, PAGE_SIZE, off) != PAGE_SIZE)
		test_abort("pread into page %d: %s", p, strerror(errno));
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000 * 1000};
	uint64_t rnd = 0x7654321, writes = 0;
	int bad = 0, fd;
	char *path;

	test_init(argc, argv);
	path = test_path(".pages");
	fd = test_pattern_file(path, filebuf, FILE_PAGES, FILE_SEED);
	area = mmap(NULL, NPAGES * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap failed");
	for (int p = 0; p < NPAGES; p++)
		write_page(fd, p);
	test_daemon();
	/* no capability left: root's are dropped with the uids (no PR_SET_KEEPCAPS) */
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		test_abort("cannot become uid 65534: %s", strerror(errno));

	while (test_go()) {
		int p = (int)(xorshift64(&rnd) % NPAGES);
		gen[p]++;
		write_page(fd, p);
		writes++;
		nanosleep(&ms, NULL);
	}
	if (zdtm_break)
		gen[17] += 2;
	for (int p = 0; p < NPAGES; p++)
		if (check_pattern(area + p * PAGE_SIZE, PAGE_SIZE, page_seed(p)) >= 0 && bad++ < 8)
			fail("page %d does not hold generation %u (%s)", p, gen[p], gen[p] & 1 ? "from the file" : "own");
	test_msg("%llu page writes, half of them by pread()", (unsigned long long)writes);
	return test_finish();
}
