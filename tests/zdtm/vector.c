/*
 * vector: SSE, AVX and AVX-512 registers hold values across the dump.  An inline-asm loop loads
 * known patterns into xmm0-15 (ymm0-15 with AVX; zmm0-31 and k1-k7 with AVX-512) and into rbx and
 * r12-r15, spins in user space until SIGTERM, then stores them all and compares.  What the CPU
 * has is read at run time (cpuid + xgetbv); a missing extension is reported in the outfile by
 * name ("avx512: not present on this CPU, not checked"), never skipped silently.
 */
#include "lib/zdtmtst.h"

#include <cpuid.h>
#include <string.h>

#define NVEC 32
static unsigned char vin[NVEC * 64] __attribute__((aligned(64)));
static unsigned char vout[NVEC * 64] __attribute__((aligned(64)));
static uint64_t gin[5], gout[5], kin[8], kout[8];

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;
	asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static int cpu_has_avx(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & (1u << 27)) || !(c & (1u << 28))) /* OSXSAVE, AVX */
		return 0;
	return (xgetbv0() & 0x6) == 0x6;
}

static int cpu_has_avx512(void)
{
	unsigned a, b, c, d;
	if (!cpu_has_avx() || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	if (!(b & (1u << 16))) /* AVX512F */
		return 0;
	return (xgetbv0() & 0xe6) == 0xe6;
}

#define GPR_LOAD "mov 0(%[gi]), %%rbx\n mov 8(%[gi]), %%r12\n mov 16(%[gi]), %%r13\n" \
		 "mov 24(%[gi]), %%r14\n mov 32(%[gi]), %%r15\n"
#define GPR_STORE "mov %%rbx, 0(%[go])\n mov %%r12, 8(%[go])\n mov %%r13, 16(%[go])\n" \
		  "mov %%r14, 24(%[go])\n mov %%r15, 32(%[go])\n"
#define SPIN "1: pause\n cmpl $0, (%[flag])\n je 1b\n"
#define X16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define X16HI(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define XMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
		     "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

#define SSE_LD(n) "movdqu " #n "*64(%[vi]), %%xmm" #n "\n"
#define SSE_ST(n) "movdqu %%xmm" #n ", " #n "*64(%[vo])\n"
static void spin_sse(void)
{
	asm volatile(X16(SSE_LD) GPR_LOAD SPIN X16(SSE_ST) GPR_STORE
		     : : [vi] "r"(vin), [vo] "r"(vout), [gi] "r"(gin), [go] "r"(gout), [flag] "r"(&zdtm_stop)
		     : "memory", "cc", "rbx", "r12", "r13", "r14", "r15", XMM_CLOBBERS);
}

#define AVX_LD(n) "vmovdqu " #n "*64(%[vi]), %%ymm" #n "\n"
#define AVX_ST(n) "vmovdqu %%ymm" #n ", " #n "*64(%[vo])\n"
static void spin_avx(void)
{
	asm volatile(X16(AVX_LD) GPR_LOAD SPIN X16(AVX_ST) GPR_STORE "vzeroupper\n"
		     : : [vi] "r"(vin), [vo] "r"(vout), [gi] "r"(gin), [go] "r"(gout), [flag] "r"(&zdtm_stop)
		     : "memory", "cc", "rbx", "r12", "r13", "r14", "r15", XMM_CLOBBERS);
}

#define Z_LD(n) "vmovdqu64 " #n "*64(%[vi]), %%zmm" #n "\n"
#define Z_ST(n) "vmovdqu64 %%zmm" #n ", " #n "*64(%[vo])\n"
#define K_LD(n) "kmovw " #n "*8(%[ki]), %%k" #n "\n"
#define K_ST(n) "kmovw %%k" #n ", " #n "*8(%[ko])\n"
#define X7(M) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
__attribute__((target("avx512f"))) static void spin_avx512(void)
{
	asm volatile(X16(Z_LD) X16HI(Z_LD) X7(K_LD) GPR_LOAD SPIN X16(Z_ST) X16HI(Z_ST) X7(K_ST) GPR_STORE
		     "vzeroupper\n"
		     : : [vi] "r"(vin), [vo] "r"(vout), [gi] "r"(gin), [go] "r"(gout), [ki] "r"(kin),
		       [ko] "r"(kout), [flag] "r"(&zdtm_stop)
		     : "memory", "cc", "rbx", "r12", "r13", "r14", "r15", XMM_CLOBBERS, "xmm16", "xmm17",
		       "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",
		       "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

/* ZDTM_BREAK: change xmm3 in the signal frame, so that sigreturn hands back a wrong value. */
static void break_xmm3(siginfo_t *info, ucontext_t *uc)
{
	(void)info;
	uc->uc_mcontext.fpregs->_xmm[3].element[0] ^= 1;
}

static void compare(const char *name, int nregs, int width)
{
	for (int r = 0; r < nregs; r++)
		if (memcmp(vin + r * 64, vout + r * 64, (size_t)width))
			fail("%s%d changed", name, r);
}

int main(int argc, char **argv)
{
	int avx, avx512;

	test_init(argc, argv);
	fill_pattern(vin, sizeof(vin), 0x5eed);
	fill_pattern(gin, sizeof(gin), 0x6e6e);
	fill_pattern(kin, sizeof(kin), 0x4b4b);
	for (int i = 0; i < 8; i++)
		kin[i] &= 0xffff;
	avx = cpu_has_avx();
	avx512 = cpu_has_avx512();
	test_msg("cpu: avx %s, avx512 %s, xcr0 %#llx", avx ? "yes" : "no", avx512 ? "yes" : "no",
		 (unsigned long long)xgetbv0());
	if (zdtm_break)
		zdtm_sigterm_hook = break_xmm3;
	test_daemon();

	if (avx512)
		spin_avx512();
	else if (avx)
		spin_avx();
	else
		spin_sse();

	if (memcmp(gin, gout, sizeof(gin)))
		fail("general registers rbx/r12-r15 changed");
	if (avx512) {
		compare("zmm", 32, 64);
		for (int k = 1; k < 8; k++)
			if (kin[k] != kout[k])
				fail("k%d changed: %#llx, want %#llx", k, (unsigned long long)kout[k],
				     (unsigned long long)kin[k]);
		test_msg("avx512: checked zmm0-31 and k1-k7");
		test_msg("avx: checked ymm0-15 (the low halves of zmm0-15)");
	} else {
		if (avx) {
			compare("ymm", 16, 32);
			test_msg("avx: checked ymm0-15");
		} else {
			compare("xmm", 16, 16);
			test_msg("avx: not present on this CPU, not checked");
			test_msg("sse: checked xmm0-15");
		}
		test_msg("avx512: not present on this CPU, not checked");
	}
	return test_finish();
}
