/*
 * refused_perf: a perf event counting this task's CPU clock: refused at dump (refused_kinds.h);
 * then the counter still reads and has grown.
 */
#include "refused_kinds.h"

#include <linux/perf_event.h>

static uint64_t count(int fd)
{
	uint64_t v = 0;
	return read(fd, &v, sizeof(v)) == sizeof(v) ? v : 0;
}

int main(int argc, char **argv)
{
	struct perf_event_attr attr = { .type = PERF_TYPE_SOFTWARE, .size = sizeof(attr),
					 .config = PERF_COUNT_SW_TASK_CLOCK };
	int fd;

	test_init(argc, argv);
	fd = syscall(__NR_perf_event_open, &attr, 0, -1, -1, 0);
	if (fd < 0)
		test_abort("perf_event_open: %s", strerror(errno));
	test_daemon();
	uint64_t before = count(fd);

	test_waitsig();
	if (zdtm_break)
		close(fd);
	for (volatile int i = 0; i < 1000000; i++)
		;
	if (!fd_is(fd, "[perf_event]") || count(fd) <= before)
		fail("the perf counter is gone or stopped");
	return test_finish();
}
