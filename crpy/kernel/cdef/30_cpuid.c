/* CPUID (leaf 0xD gives the offset and size of each XSAVE component in the standard layout)
 * and XGETBV (XCR0: the components the kernel enabled for user space). */
#include <cpuid.h>

static int crpy_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
    unsigned int a, b, c, d;
    if (!__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d))
        return -1;   /* leaf above the maximum this CPU supports */
    out[0] = a; out[1] = b; out[2] = c; out[3] = d;
    return 0;
}

static uint64_t crpy_xgetbv(uint32_t index)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(index));
    return ((uint64_t)hi << 32) | lo;
}
