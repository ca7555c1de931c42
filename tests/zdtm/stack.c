/*
 * stack: a deep stack at dump time (256 frames of 4 KiB, each holding data), and a stack that can
 * still grow after the restore.  The test waits for SIGTERM in its deepest frame; afterwards every
 * frame must hold its data, and a further 2 MiB of recursion must work: the [stack] VMA has to
 * grow down on demand as before, not fault.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>

#define FRAME 4096
#define DEPTH 256
#define MORE 512

static uint64_t seed = 0x57ac;
static char maps[262144];
static unsigned long deepest;

static unsigned long stack_vma_start(void)
{
	char *l;
	unsigned long s = 0;
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0 || !(l = strstr(maps, "[stack]")))
		return 0;
	while (l > maps && l[-1] != '\n')
		l--;
	sscanf(l, "%lx-", &s);
	return s;
}

static __attribute__((noinline)) int grow(int depth)
{
	volatile unsigned char buf[FRAME];
	int r = 0;

	fill_pattern((void *)buf, FRAME, seed * 7 + (uint64_t)depth);
	if ((unsigned long)buf < deepest)
		deepest = (unsigned long)buf;
	if (depth < MORE)
		r = grow(depth + 1);
	return r + (check_pattern((void *)buf, FRAME, seed * 7 + (uint64_t)depth) >= 0);
}

static __attribute__((noinline)) void after_sigterm(void)
{
	unsigned long before = stack_vma_start();
	int bad = grow(0);

	if (bad)
		fail("%d frames of the new recursion lost data", bad);
	if (stack_vma_start() > deepest)
		fail("[stack] starts at %#lx, above the deepest frame %#lx", stack_vma_start(), deepest);
	if (stack_vma_start() >= before)
		fail("the stack did not grow: [stack] start %#lx before, %#lx after", before, stack_vma_start());
}

static __attribute__((noinline)) int recurse(int depth)
{
	volatile unsigned char buf[FRAME];
	int r = 0;

	fill_pattern((void *)buf, FRAME, seed + (uint64_t)depth);
	if (depth < DEPTH) {
		r = recurse(depth + 1);
	} else {
		deepest = (unsigned long)buf;
		test_msg("deepest frame at %p, [stack] starts at %#lx", (void *)buf, stack_vma_start());
		test_daemon();
		test_waitsig();
		if (zdtm_break)
			buf[FRAME / 2] ^= 1;
		after_sigterm();
	}
	if (check_pattern((void *)buf, FRAME, seed + (uint64_t)depth) >= 0) {
		fail("frame %d lost its data", depth);
		r++;
	}
	return r;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	recurse(0);
	return test_finish();
}
