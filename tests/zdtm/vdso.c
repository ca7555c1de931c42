/*
 * vdso: the vDSO trio ([vvar], [vvar_vclock], [vdso]) and the clocks it serves.  After SIGTERM
 * the three maps lines must be where they were, AT_SYSINFO_EHDR must still point at [vdso], and
 * the vDSO's clock_gettime/gettimeofday must tell the kernel's time (compared with the raw
 * syscall) and advance: a vvar page copied from the dump instead of the kernel's live one would
 * show a frozen clock.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <elf.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char maps[262144], lines_before[1024], lines_after[1024];

static void vdso_lines(char *out, size_t size)
{
	static const char *names[] = {"[vvar]", "[vvar_vclock]", "[vdso]"};
	size_t used = 0;

	out[0] = 0;
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0)
		return;
	for (int i = 0; i < 3; i++) {
		char *l = strstr(maps, names[i]);
		if (!l) {
			used += (size_t)snprintf(out + used, size - used, "(no %s)\n", names[i]);
			continue;
		}
		while (l > maps && l[-1] != '\n')
			l--;
		used += (size_t)snprintf(out + used, size - used, "%.*s\n", (int)strcspn(l, "\n"), l);
	}
}

/* Start address of the line of `text` that names `name`, or 0. */
static unsigned long line_start(const char *text, const char *name)
{
	const char *l = strstr(text, name);
	unsigned long s = 0;
	if (!l)
		return 0;
	while (l > text && l[-1] != '\n')
		l--;
	sscanf(l, "%lx-", &s);
	return s;
}

static double ts(const struct timespec *t) { return (double)t->tv_sec + t->tv_nsec / 1e9; }

static void check_clock(clockid_t id, const char *name)
{
	struct timespec v1, v2, k;
	struct timespec pause = {0, 30 * 1000 * 1000};

	clock_gettime(id, &v1);
	nanosleep(&pause, NULL);
	clock_gettime(id, &v2);
	syscall(SYS_clock_gettime, id, &k);
	if (ts(&v2) - ts(&v1) < 0.025)
		fail("vDSO %s advanced %.6f s over a 30 ms sleep (frozen vvar?)", name, ts(&v2) - ts(&v1));
	if (ts(&k) - ts(&v2) < -0.001 || ts(&k) - ts(&v2) > 0.5)
		fail("vDSO %s %.6f and the syscall's %.6f disagree", name, ts(&v2), ts(&k));
}

int main(int argc, char **argv)
{
	unsigned long ehdr, vdso_start;
	struct timeval tv;
	struct timespec k;

	test_init(argc, argv);
	vdso_lines(lines_before, sizeof(lines_before));
	if (strstr(lines_before, "(no "))
		test_abort("vDSO mappings missing: %s", lines_before);
	test_daemon();

	test_waitsig();
	if (zdtm_break) {
		/* [vdso] is sealed here (mprotect fails); damage the in-memory auxv instead, which
		 * getauxval() reads: it sits after environ's NULL on the initial stack. */
		extern char **environ;
		char **p = environ;
		while (*p)
			p++;
		for (Elf64_auxv_t *a = (Elf64_auxv_t *)(p + 1); a->a_type != AT_NULL; a++)
			if (a->a_type == AT_SYSINFO_EHDR)
				a->a_un.a_val += PAGE_SIZE;
	}
	vdso_lines(lines_after, sizeof(lines_after));
	if (strcmp(lines_before, lines_after)) {
		fail("the vDSO mappings changed");
		test_text(lines_before);
		test_text(lines_after);
	}
	ehdr = getauxval(AT_SYSINFO_EHDR);
	vdso_start = line_start(lines_after, "[vdso]");
	if (ehdr != vdso_start)
		fail("AT_SYSINFO_EHDR %#lx, [vdso] at %#lx", ehdr, vdso_start);
	check_clock(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	check_clock(CLOCK_REALTIME, "CLOCK_REALTIME");
	gettimeofday(&tv, NULL);
	syscall(SYS_clock_gettime, CLOCK_REALTIME, &k);
	if (k.tv_sec - tv.tv_sec > 1 || k.tv_sec - tv.tv_sec < 0)
		fail("gettimeofday %ld s vs the kernel's %ld s", (long)tv.tv_sec, (long)k.tv_sec);
	return test_finish();
}
