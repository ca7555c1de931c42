/*
 * forkafter: the restored task can still fork and exec, and its children see the memory as the
 * kernel promises: a private page with data is copied, a MADV_WIPEONFORK page reads as zeros in
 * the child, a MADV_DONTFORK page is absent there.  The child also execs a shell that exits 7.
 */
#include "lib/zdtmtst.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char *data, *wipe, *nofork;

/* In the child: exit code = bit mask of what went wrong. */
static int child_checks(pid_t parent)
{
	int bad = 0;
	if (getppid() != parent)
		bad |= 1;
	if (check_pattern(data, PAGE_SIZE, 1) >= 0)
		bad |= 2;
	if (wipe[0] || wipe[PAGE_SIZE - 1])
		bad |= 4;
	if (!probe_read(nofork))
		bad |= 8;
	return bad;
}

static void fork_and_check(const char *when)
{
	pid_t parent = getpid(), pid;
	int status;

	pid = fork();
	if (pid == 0)
		_exit(child_checks(parent));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
		fail("%s: fork/wait failed", when);
		return;
	}
	if (WEXITSTATUS(status))
		fail("%s: the child saw: %s%s%s%s", when, WEXITSTATUS(status) & 1 ? "wrong parent; " : "",
		     WEXITSTATUS(status) & 2 ? "wrong data; " : "", WEXITSTATUS(status) & 4 ? "wipe-on-fork data; " : "",
		     WEXITSTATUS(status) & 8 ? "a dont-fork page" : "");
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
		_exit(99);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
		fail("%s: fork+exec of sh did not exit 7", when);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	data = mmap(NULL, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (data == MAP_FAILED)
		test_abort("mmap failed");
	wipe = data + PAGE_SIZE;
	nofork = data + 2 * PAGE_SIZE;
	fill_pattern(data, 3 * PAGE_SIZE, 1);
	fill_pattern(data, PAGE_SIZE, 1);
	if (madvise(wipe, PAGE_SIZE, MADV_WIPEONFORK) || madvise(nofork, PAGE_SIZE, MADV_DONTFORK))
		test_abort("madvise failed");
	fork_and_check("before dump");
	if (test_failed())
		test_abort("fork semantics wrong before any dump");
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		madvise(wipe, PAGE_SIZE, MADV_KEEPONFORK);
	fork_and_check("after SIGTERM");
	if (wipe[0] == 0 && wipe[1] == 0)
		fail("the wipe-on-fork page lost its data in the parent");
	return test_finish();
}
