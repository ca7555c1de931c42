/*
 * mmstruct: the mm fields the kernel keeps for a process: the code, data, brk, stack, argument
 * and environment bounds (/proc/self/stat fields 26-28 and 45-51), the saved auxv
 * (/proc/self/auxv) and the executable (/proc/self/exe).  After SIGTERM all must be as they were.
 * ZDTM_BREAK moves arg_end by one byte with PR_SET_MM_MAP, a real change of the kernel's state.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const int fields[] = {26, 27, 28, 45, 46, 47, 48, 49, 50, 51};
#define NFIELDS (int)(sizeof(fields) / sizeof(fields[0]))
static unsigned long before[NFIELDS], after[NFIELDS];
static char auxv_before[4096], auxv_after[4096], exe_before[4096], exe_after[4096], stat[4096];
static long auxv_len_before, auxv_len_after;

/* Values of the stat fields we watch (numbered from 1 as in proc(5)). */
static void read_stat_fields(unsigned long *out)
{
	const char *p;

	if (read_whole("/proc/self/stat", stat, sizeof(stat)) <= 0 || !(p = strrchr(stat, ')')))
		test_abort("cannot read /proc/self/stat");
	p += 2; /* field 3 starts here */
	for (int field = 3, i = 0; *p && i < NFIELDS; field++) {
		if (field == fields[i])
			sscanf(p, "%lu", &out[i++]);
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
	}
}

static void read_exe(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	out[n > 0 ? n : 0] = 0;
}

static void break_arg_end(void)
{
	struct prctl_mm_map m;

	memset(&m, 0, sizeof(m));
	m.start_code = before[0];
	m.end_code = before[1];
	m.start_stack = before[2];
	m.start_data = before[3];
	m.end_data = before[4];
	m.start_brk = before[5];
	m.brk = (uint64_t)syscall(SYS_brk, 0);
	m.arg_start = before[6];
	m.arg_end = before[7] - 1;
	m.env_start = before[8];
	m.env_end = before[9];
	m.exe_fd = (uint32_t)-1;
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, &m, sizeof(m), 0))
		test_msg("break: PR_SET_MM_MAP failed");
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	read_stat_fields(before);
	auxv_len_before = read_whole("/proc/self/auxv", auxv_before, sizeof(auxv_before));
	read_exe(exe_before, sizeof(exe_before));
	if (auxv_len_before <= 0 || !exe_before[0])
		test_abort("cannot read /proc/self/auxv or exe");
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		break_arg_end();
	read_stat_fields(after);
	for (int i = 0; i < NFIELDS; i++)
		if (after[i] != before[i])
			fail("/proc/self/stat field %d is %#lx, was %#lx", fields[i], after[i], before[i]);
	auxv_len_after = read_whole("/proc/self/auxv", auxv_after, sizeof(auxv_after));
	if (auxv_len_after != auxv_len_before || memcmp(auxv_after, auxv_before, (size_t)auxv_len_before))
		fail("/proc/self/auxv changed (%ld bytes, was %ld)", auxv_len_after, auxv_len_before);
	read_exe(exe_after, sizeof(exe_after));
	if (strcmp(exe_after, exe_before))
		fail("/proc/self/exe is %s, was %s", exe_after, exe_before);
	return test_finish();
}
