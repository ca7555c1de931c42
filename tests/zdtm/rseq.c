/*
 * rseq: glibc's restartable-sequences registration.  glibc registers a struct rseq for the main
 * thread at start-up; the kernel keeps its cpu_id field current.  After SIGTERM the registration
 * must still be in place (registering the same area again must fail with EBUSY) and live: after
 * pinning the task to each CPU in turn, cpu_id must follow (a stale copy from the dump would not).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct rseq *area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* glibc registers at least 32 bytes even when __rseq_size (the feature size) is smaller. */
static unsigned reg_len(void) { return __rseq_size < 32 ? 32 : __rseq_size; }

static int registered(void)
{
	long r = syscall(SYS_rseq, area(), reg_len(), 0, RSEQ_SIG);
	if (r == 0) { /* it was not registered: undo ours, so the check leaves no trace */
		syscall(SYS_rseq, area(), reg_len(), RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
		return 0;
	}
	return errno == EBUSY;
}

static void check_cpu_id_follows(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t all, one;

	sched_getaffinity(0, sizeof(all), &all);
	for (int cpu = 0; cpu < ncpu && cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &all))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one))
			continue;
		sched_yield();
		if ((int)area()->cpu_id != cpu)
			fail("pinned to CPU %d, rseq cpu_id says %d", cpu, (int)area()->cpu_id);
	}
	sched_setaffinity(0, sizeof(all), &all);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	if (__rseq_size == 0)
		test_abort("glibc did not register rseq (glibc.pthread.rseq=0?): nothing to check");
	if (!registered())
		test_abort("rseq is not registered before any dump");
	check_cpu_id_follows();
	if (test_failed())
		test_abort("rseq cpu_id does not follow the CPU before any dump");
	test_msg("rseq area %p, size %u", (void *)area(), __rseq_size);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		syscall(SYS_rseq, area(), reg_len(), RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
	if (!registered())
		fail("rseq is no longer registered");
	check_cpu_id_follows();
	return test_finish();
}
