/*
 * busyloop: a task running in user space at dump time.  A counter lives both in a register and in
 * memory and must stay in step; after SIGTERM the task must have made progress since it was ready
 * and must keep counting.
 */
#include "lib/zdtmtst.h"

#include <time.h>

static volatile uint64_t counter;
static volatile uint64_t mismatches;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	uint64_t local = 0, at_ready, at_stop, deadline;

	test_init(argc, argv);
	test_daemon();
	at_ready = counter;

	while (test_go()) {
		local++;
		counter = local;
		if (counter != local)
			mismatches++;
	}
	at_stop = counter;
	if (zdtm_break)
		counter = at_ready;

	if (counter <= at_ready)
		fail("no progress: counter %llu at ready, %llu after SIGTERM",
		     (unsigned long long)at_ready, (unsigned long long)counter);
	if (mismatches)
		fail("register and memory copies of the counter disagreed %llu times",
		     (unsigned long long)mismatches);
	/* Still running: the loop must go on counting after the restore. */
	deadline = now_ns() + 50000000ULL;
	while (now_ns() < deadline)
		counter = ++local;
	if (local <= at_stop)
		fail("counter stopped after SIGTERM");
	test_msg("counted %llu iterations", (unsigned long long)at_stop);
	return test_finish();
}
