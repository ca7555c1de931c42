/*
 * eventfd: three eventfds: a plain one (count 42, O_NONBLOCK, close-on-exec), an EFD_SEMAPHORE
 * one (count 3, O_NONBLOCK) and a blocking one whose count (2^40 + 5) does not fit in the 32-bit
 * initial value of eventfd().  After restore: flags, close-on-exec, the semaphore behaviour (three
 * reads of 1, then EAGAIN) and every count; a write still adds to the count.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BIG ((1ULL << 40) + 5)

static uint64_t take(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return (uint64_t)-1;
	return v;
}

int main(int argc, char **argv)
{
	int plain, sem, big;
	uint64_t v = BIG;

	test_init(argc, argv);
	plain = eventfd(42, EFD_NONBLOCK | EFD_CLOEXEC);
	sem = eventfd(3, EFD_NONBLOCK | EFD_SEMAPHORE);
	big = eventfd(0, 0);
	if (plain < 0 || sem < 0 || big < 0 || write(big, &v, sizeof(v)) != sizeof(v))
		test_abort("eventfd: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		take(sem);
	if (!(fcntl(plain, F_GETFL) & O_NONBLOCK) || !(fcntl(plain, F_GETFD) & FD_CLOEXEC))
		fail("the plain eventfd lost O_NONBLOCK or close-on-exec");
	if (!(fcntl(sem, F_GETFL) & O_NONBLOCK) || (fcntl(sem, F_GETFD) & FD_CLOEXEC))
		fail("the semaphore eventfd's flags changed");
	if ((fcntl(big, F_GETFL) & O_NONBLOCK) || (fcntl(big, F_GETFD) & FD_CLOEXEC))
		fail("the blocking eventfd's flags changed");
	for (int i = 0; i < 3; i++)
		if ((v = take(sem)) != 1)
			fail("semaphore read %d gave %llu, not 1", i, (unsigned long long)v);
	if (read(sem, &v, sizeof(v)) != -1 || errno != EAGAIN)
		fail("the semaphore eventfd is not empty after three reads");
	if ((v = take(plain)) != 42)
		fail("the plain eventfd's count is %llu, not 42", (unsigned long long)v);
	if ((v = take(big)) != BIG)
		fail("the big count is %llu, not %llu", (unsigned long long)v, BIG);
	v = 9;
	if (write(plain, &v, sizeof(v)) != sizeof(v) || take(plain) != 9)
		fail("a write after restore does not add to the count");
	return test_finish();
}
