/*
 * fpu: x87 and SSE control state held across a dump taken while the task sleeps in a syscall.
 * Inline asm sets a non-default x87 control word and MXCSR, pushes eight 80-bit values on the x87
 * stack and patterns into xmm8-15, then loops on nanosleep(10 ms) until SIGTERM; afterwards every
 * value and both control words must be as they were.
 */
#include "lib/zdtmtst.h"

#include <stddef.h>
#include <string.h>
#include <time.h>

struct fpu_state {
	long double st_in[8];
	long double st_out[8];
	unsigned char xin[8 * 16];
	unsigned char xout[8 * 16];
	struct timespec ts;
	uint32_t mx, mx_out, mx_default;
	uint16_t cw, cw_out, cw_default;
};

static struct fpu_state s __attribute__((aligned(64)));

#define OFF(f) [f] "i"(offsetof(struct fpu_state, f))
#define XLD(n, r) "movdqu %c[xin]+" #n "*16(%[s]), %%xmm" #r "\n"
#define XST(n, r) "movdqu %%xmm" #r ", %c[xout]+" #n "*16(%[s])\n"
#define FLD(n) "fldt %c[st_in]+" #n "*16(%[s])\n"
#define FST(n) "fstpt %c[st_out]+" #n "*16(%[s])\n"

static void sleep_with_fpu_state(void)
{
	asm volatile("fninit\n"
		     "fldcw %c[cw](%[s])\n"
		     "ldmxcsr %c[mx](%[s])\n"
		     FLD(0) FLD(1) FLD(2) FLD(3) FLD(4) FLD(5) FLD(6) FLD(7)
		     XLD(0, 8) XLD(1, 9) XLD(2, 10) XLD(3, 11) XLD(4, 12) XLD(5, 13) XLD(6, 14) XLD(7, 15)
		     "1: mov $35, %%eax\n"
		     "lea %c[ts](%[s]), %%rdi\n"
		     "xor %%esi, %%esi\n"
		     "syscall\n"
		     "cmpl $0, (%[flag])\n"
		     "je 1b\n"
		     "fnstcw %c[cw_out](%[s])\n"
		     "stmxcsr %c[mx_out](%[s])\n"
		     FST(0) FST(1) FST(2) FST(3) FST(4) FST(5) FST(6) FST(7)
		     XST(0, 8) XST(1, 9) XST(2, 10) XST(3, 11) XST(4, 12) XST(5, 13) XST(6, 14) XST(7, 15)
		     "fldcw %c[cw_default](%[s])\n"
		     "ldmxcsr %c[mx_default](%[s])\n"
		     :
		     : [s] "r"(&s), [flag] "r"(&zdtm_stop), OFF(cw), OFF(mx), OFF(st_in), OFF(st_out),
		       OFF(xin), OFF(xout), OFF(ts), OFF(cw_out), OFF(mx_out), OFF(cw_default),
		       OFF(mx_default)
		     : "memory", "cc", "rax", "rcx", "rdx", "rsi", "rdi", "r11", "st", "st(1)", "st(2)",
		       "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "xmm8", "xmm9", "xmm10", "xmm11",
		       "xmm12", "xmm13", "xmm14", "xmm15");
}

/* ZDTM_BREAK: damage MXCSR and one x87 register in the signal frame. */
static void break_frame(siginfo_t *info, ucontext_t *uc)
{
	(void)info;
	uc->uc_mcontext.fpregs->mxcsr ^= 0x2000;
	uc->uc_mcontext.fpregs->_st[2].significand[0] ^= 1;
}

int main(int argc, char **argv)
{
	static const long double values[8] = {1.0L / 3.0L, -2.25L, 3.14159265358979323846264L, 1e300L,
					      -1e-300L, 7.0L, 12345.678901234567890L, 2.0L / 7.0L};

	test_init(argc, argv);
	memcpy(s.st_in, values, sizeof(values));
	fill_pattern(s.xin, sizeof(s.xin), 0xf00d);
	s.ts.tv_nsec = 10 * 1000 * 1000;
	s.cw = 0x0a7f;       /* all exceptions masked, 53-bit precision, round up */
	s.mx = 0xffe0;       /* masks, round toward zero, FTZ, DAZ, sticky PE */
	s.cw_default = 0x037f;
	s.mx_default = 0x1f80;
	if (zdtm_break)
		zdtm_sigterm_hook = break_frame;
	test_daemon();

	sleep_with_fpu_state();

	if (s.cw_out != s.cw)
		fail("x87 control word %#x, want %#x", s.cw_out, s.cw);
	if (s.mx_out != s.mx)
		fail("MXCSR %#x, want %#x", s.mx_out, s.mx);
	for (int i = 0; i < 8; i++)
		if (memcmp(&s.st_out[i], &s.st_in[7 - i], 10))
			fail("x87 st(%d) changed", i);
	for (int i = 0; i < 8; i++)
		if (memcmp(s.xout + i * 16, s.xin + i * 16, 16))
			fail("xmm%d changed", 8 + i);
	return test_finish();
}
