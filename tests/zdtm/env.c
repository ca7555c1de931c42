/*
 * env: the environment and the command line.  The test re-executes itself once with extra
 * arguments and variables of its own choosing (spaces, UTF-8, '=' signs, empty strings), keeps a
 * copy of /proc/self/cmdline, environ and comm, and after SIGTERM reads them again: they must be
 * byte for byte the same, and the argv/environ strings in memory must still hold the values.
 */
#include "lib/zdtmtst.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MARK "ZDTM_ENV_MARK"
static const char *extra_args[] = {"with space", "\xc3\xbc" "nicode", "", "--x=y", NULL};
static const char *extra_env[] = {MARK "=value=with=equals", "ZDTM_ENV_EMPTY=", "ZDTM_ENV_LONG="
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", NULL};

static char cmdline0[65536], environ0[65536], comm0[64];
static long cmdline0_len, environ0_len;
static char now[65536];

static void reexec(int argc, char **argv)
{
	static char *nargv[256], *nenv[1024], self[4096];
	int i, n = 0;
	extern char **environ;

	for (i = 0; i < argc && n < 200; i++)
		nargv[n++] = argv[i];
	for (i = 0; extra_args[i]; i++)
		nargv[n++] = (char *)extra_args[i];
	nargv[n] = NULL;
	for (n = 0; environ[n] && n < 1000; n++)
		nenv[n] = environ[n];
	for (i = 0; extra_env[i]; i++)
		nenv[n++] = (char *)extra_env[i];
	nenv[n] = NULL;
	/* exec the real path, not /proc/self/exe: comm is taken from the file name */
	i = (int)readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (i <= 0)
		_exit(4);
	self[i] = 0;
	execve(self, nargv, nenv);
	_exit(4);
}

static void compare(const char *what, const char *path, const char *want, long want_len)
{
	long len = read_whole(path, now, sizeof(now));

	if (len < 0) {
		fail("cannot read %s", path);
		return;
	}
	if (len != want_len || memcmp(now, want, (size_t)len)) {
		long i = 0;
		while (i < len && i < want_len && now[i] == want[i])
			i++;
		fail("%s changed: %ld bytes now, %ld before, first difference at byte %ld", what, len,
		     want_len, i);
	}
}

static void check_memory(int argc, char **argv)
{
	const char *v = getenv(MARK);
	int i, base = argc;

	for (i = 0; extra_args[i]; i++)
		base--;
	for (i = 0; extra_args[i]; i++)
		if (strcmp(argv[base + i], extra_args[i]))
			fail("argv[%d] in memory is \"%s\", want \"%s\"", base + i, argv[base + i],
			     extra_args[i]);
	if (!v || strcmp(v, strchr(extra_env[0], '=') + 1))
		fail("getenv(%s) is \"%s\"", MARK, v ? v : "(null)");
}

int main(int argc, char **argv)
{
	if (!getenv(MARK))
		reexec(argc, argv);
	test_init(argc, argv);
	cmdline0_len = read_whole("/proc/self/cmdline", cmdline0, sizeof(cmdline0));
	environ0_len = read_whole("/proc/self/environ", environ0, sizeof(environ0));
	if (cmdline0_len <= 0 || environ0_len <= 0 || read_whole("/proc/self/comm", comm0, sizeof(comm0)) <= 0)
		test_abort("cannot read /proc/self/{cmdline,environ,comm}");
	if (!memmem(environ0, (size_t)environ0_len, extra_env[0], strlen(extra_env[0])))
		test_abort("/proc/self/environ lacks %s", extra_env[0]);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		getenv(MARK)[0] ^= 1; /* the environ area itself: /proc/self/environ must show it */

	compare("/proc/self/cmdline", "/proc/self/cmdline", cmdline0, cmdline0_len);
	compare("/proc/self/environ", "/proc/self/environ", environ0, environ0_len);
	compare("/proc/self/comm", "/proc/self/comm", comm0, (long)strlen(comm0));
	check_memory(argc, argv);
	return test_finish();
}
