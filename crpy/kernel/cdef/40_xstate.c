/* XSAVE facts of this CPU, for the restore side's rt_sigframe: XCR0 (the features the kernel
 * enabled for user space, read with xgetbv, allowed in user mode once OSXSAVE is set) and the
 * size of the standard-format XSAVE area for exactly those features (CPUID 0xD.0 EBX). */
#include <cpuid.h>

static uint64_t crpy_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t crpy_xsave_user_size(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d))
        return 0;
    return b;
}
