/*
 * untouched.h: helpers of the tests whose dump must refuse and leave the task untouched
 * (tests/zdtm/desc.py: dump_fails), header only: a 1 MiB patterned area set up before the dump
 * and checked after it (ZDTM_BREAK flips a byte of it first), and the check that a message
 * queued on a socket before the dump is still there.
 */
#ifndef ZDTM_UNTOUCHED_H
#define ZDTM_UNTOUCHED_H

#include <string.h>
#include <sys/socket.h>

#include "zdtmtst.h"

#define UNTOUCHED_SEED 0xabab

static unsigned char untouched_mem[1 << 20];

static inline void untouched_mem_fill(void)
{
	fill_pattern(untouched_mem, sizeof(untouched_mem), UNTOUCHED_SEED);
}

/* ZDTM_BREAK: damage the area, so that untouched_mem_check() can be seen to fail. */
static inline void untouched_mem_break(void)
{
	if (zdtm_break)
		untouched_mem[777] ^= 1;
}

static inline void untouched_mem_check(void)
{
	long bad = check_pattern(untouched_mem, sizeof(untouched_mem), UNTOUCHED_SEED);

	if (bad >= 0)
		fail("memory differs at +%ld", bad);
}

/* fail()s naming `what` unless fd has exactly the message "queued" to read now. */
static inline void untouched_expect_queued(int fd, const char *what)
{
	char buf[32];

	if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) != 6 || memcmp(buf, "queued", 6))
		fail("the %s lost its queued message", what);
}

#endif
