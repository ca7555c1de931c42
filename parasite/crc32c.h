/* crc32c.h: CRC-32C (Castagnoli, the iSCSI/ext4 polynomial), the digest of crpy-digests chunks.
 *
 * Shared by the parasite blob (it hashes pages as it vmsplices them, where they already are) and
 * crpy's cffi module (the restore's check, and the dump's chunks the parasite did not hash), so
 * both ends compute the same function.  Freestanding: no library calls, no globals but the tables.
 *
 * With SSE4.2 the crc32 instruction runs three independent streams over 3 x 8 KiB (then 3 x 256 B)
 * blocks, whose results are joined by "shift over N zero bytes" tables (the construction of Mark
 * Adler's crc32c.c, written anew here): one stream is bound by the instruction's 3-cycle latency,
 * three fill its one-per-cycle throughput (8 bytes a cycle, ~10 GB/s here).  With AVX-512 and
 * VPCLMULQDQ, long runs are first folded 256 bytes at a time by carry-less multiplication (the
 * method of Intel's "Fast CRC Computation Using PCLMULQDQ", constants x^n mod P below), down to
 * 16 bytes that the crc32 instruction finishes: about twice as fast again, memory-bound.
 * Without SSE4.2: a byte-at-a-time table (slow but correct, so a dump made on one machine can be
 * checked on another).
 *
 *     crc32c_init();                       once (idempotent) before the first call
 *     crc = crc32c_update(crc, buf, len);  crc32c of a byte string in pieces; start with 0
 *     crc32c_have_sse42()                  1 if the fast path is used
 */
#ifndef CRPY_CRC32C_H
#define CRPY_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <immintrin.h>

#define CRC32C_POLY 0x82f63b78u           /* reflected 0x1EDC6F41 */
#define CRC32C_LONG 8192
#define CRC32C_SHORT 256

static uint32_t crc32c_byte_table[256];
static uint32_t crc32c_long_shift[4][256];
static uint32_t crc32c_short_shift[4][256];
static int crc32c_sse42 = -1;             /* -1: not initialised yet */
static int crc32c_avx512;                 /* AVX-512F + VPCLMULQDQ, enabled by the kernel */

static uint32_t crc32c_gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1)
            sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void crc32c_gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        square[n] = crc32c_gf2_times(mat, mat[n]);
}

/* op: the 32x32 GF(2) matrix that advances a crc over len zero bytes (len a power of two) */
static void crc32c_zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32], row = 1;

    odd[0] = CRC32C_POLY;                 /* the operator of one zero bit */
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    crc32c_gf2_square(even, odd);         /* two zero bits */
    crc32c_gf2_square(odd, even);         /* four: one zero byte is two squarings more */
    for (;;) {
        crc32c_gf2_square(even, odd);
        len >>= 1;
        if (len == 0)
            return;
        crc32c_gf2_square(odd, even);
        len >>= 1;
        if (len == 0)
            break;
    }
    for (int n = 0; n < 32; n++)
        even[n] = odd[n];
}

static void crc32c_zeros(uint32_t table[4][256], size_t len)
{
    uint32_t op[32];

    crc32c_zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        table[0][n] = crc32c_gf2_times(op, n);
        table[1][n] = crc32c_gf2_times(op, n << 8);
        table[2][n] = crc32c_gf2_times(op, n << 16);
        table[3][n] = crc32c_gf2_times(op, n << 24);
    }
}

static uint32_t crc32c_shift(uint32_t table[4][256], uint32_t crc)
{
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
           table[3][crc >> 24];
}

static void crc32c_cpuid(uint32_t leaf, uint32_t out[4])
{
    uint32_t a = leaf, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    out[0] = a, out[1] = b, out[2] = c, out[3] = d;
}

static int crc32c_cpu_has_sse42(void)
{
    uint32_t r[4];
    crc32c_cpuid(1, r);
    return (r[2] >> 20) & 1;              /* CPUID.1:ECX.SSE4_2 */
}

static int crc32c_cpu_has_avx512_clmul(void)
{
    uint32_t r[4], lo, hi;
    crc32c_cpuid(0, r);
    if (r[0] < 7)
        return 0;
    crc32c_cpuid(1, r);
    if (!((r[2] >> 27) & 1))              /* OSXSAVE: xgetbv works */
        return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6) != 0xe6)              /* XCR0: SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM */
        return 0;
    crc32c_cpuid(7, r);
    return ((r[1] >> 16) & 1) && ((r[2] >> 10) & 1);  /* AVX512F, VPCLMULQDQ */
}

static void crc32c_init(void)
{
    if (crc32c_sse42 >= 0)
        return;
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ CRC32C_POLY : crc >> 1;
        crc32c_byte_table[n] = crc;
    }
    crc32c_zeros(crc32c_long_shift, CRC32C_LONG);
    crc32c_zeros(crc32c_short_shift, CRC32C_SHORT);
    crc32c_avx512 = crc32c_cpu_has_sse42() && crc32c_cpu_has_avx512_clmul();
    crc32c_sse42 = crc32c_cpu_has_sse42();
}

__attribute__((unused)) static int crc32c_have_sse42(void)
{
    crc32c_init();
    return crc32c_sse42;
}

static inline uint64_t crc32c_q(uint64_t crc, const unsigned char *p)
{
    __asm__("crc32q %1, %0" : "+r"(crc) : "m"(*(const uint64_t *)p));
    return crc;
}

static inline uint64_t crc32c_b(uint64_t crc, const unsigned char *p)
{
    __asm__("crc32b %1, %k0" : "+r"(crc) : "m"(*p));
    return crc;
}

static uint32_t crc32c_soft(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len--)
        crc = crc32c_byte_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* fold a 128-bit lane (lo, hi) forward: lo * K(n + 32) ^ hi * K(n - 32), K(n) = bit-reflected
 * (x^n mod P) << 1; the constants per lane: {K(n + 32), K(n - 32)} for the distance n */
/* 4 zmm apart (2048 bits): 0xdcb17aa4, 0xb9e02b86; one zmm (512): 0x740eef02, 0x9e4addf8;
 * one lane (128): 0xf20c0dfe, 0x14cd00bd6 */

__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))
static inline __m512i crc32c_fold512(__m512i x, __m512i k, __m512i data)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), data, 0x96);
}

__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))
static inline __m128i crc32c_fold128(__m128i x, __m128i k, __m128i data)
{
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)),
                         data);
}

/* crc register `crc0` (not inverted) over len >= 512 bytes, a multiple of 256: the register after */
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))
static uint64_t crc32c_avx512_fold(uint64_t crc0, const unsigned char *p, size_t len)
{
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(0xb9e02b86LL, 0xdcb17aa4LL));
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x9e4addf8LL, 0x740eef02LL));
    const __m128i k128 = _mm_set_epi64x(0x14cd00bd6LL, 0xf20c0dfeLL);
    __m512i z0 = _mm512_loadu_si512(p), z1 = _mm512_loadu_si512(p + 64);
    __m512i z2 = _mm512_loadu_si512(p + 128), z3 = _mm512_loadu_si512(p + 192);
    __m128i x;

    z0 = _mm512_xor_si512(z0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)(uint32_t)crc0)));
    for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
        z0 = crc32c_fold512(z0, k2048, _mm512_loadu_si512(p));
        z1 = crc32c_fold512(z1, k2048, _mm512_loadu_si512(p + 64));
        z2 = crc32c_fold512(z2, k2048, _mm512_loadu_si512(p + 128));
        z3 = crc32c_fold512(z3, k2048, _mm512_loadu_si512(p + 192));
    }
    z0 = crc32c_fold512(z0, k512, z1);
    z0 = crc32c_fold512(z0, k512, z2);
    z0 = crc32c_fold512(z0, k512, z3);
    x = crc32c_fold128(_mm512_extracti32x4_epi32(z0, 0), k128, _mm512_extracti32x4_epi32(z0, 1));
    x = crc32c_fold128(x, k128, _mm512_extracti32x4_epi32(z0, 2));
    x = crc32c_fold128(x, k128, _mm512_extracti32x4_epi32(z0, 3));
    /* what is left is 16 bytes of message whose crc (from a zero register) is the answer */
    crc0 = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    return _mm_crc32_u64(crc0, (uint64_t)_mm_extract_epi64(x, 1));
}

/* three streams of `block` bytes at a time while 3 * block remain */
#define CRC32C_BLOCKS(block, table)                                                       \
    while (len >= 3 * (block)) {                                                          \
        uint64_t crc1 = 0, crc2 = 0;                                                      \
        const unsigned char *end = p + (block);                                           \
        do {                                                                              \
            crc0 = crc32c_q(crc0, p);                                                     \
            crc1 = crc32c_q(crc1, p + (block));                                           \
            crc2 = crc32c_q(crc2, p + 2 * (block));                                       \
            p += 8;                                                                       \
        } while (p < end);                                                                \
        crc0 = crc32c_shift(table, (uint32_t)crc0) ^ crc1;                                \
        crc0 = crc32c_shift(table, (uint32_t)crc0) ^ crc2;                                \
        p += 2 * (block);                                                                 \
        len -= 3 * (block);                                                               \
    }

static uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t crc0;

    crc32c_init();
    if (!crc32c_sse42)
        return crc32c_soft(crc, p, len);
    crc0 = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc0 = crc32c_b(crc0, p++);
        len--;
    }
    if (crc32c_avx512 && len >= 1024) {
        size_t n = len & ~(size_t)255;
        crc0 = crc32c_avx512_fold(crc0, p, n);
        p += n;
        len -= n;
    }
    CRC32C_BLOCKS(CRC32C_LONG, crc32c_long_shift)
    CRC32C_BLOCKS(CRC32C_SHORT, crc32c_short_shift)
    while (len >= 8) {
        crc0 = crc32c_q(crc0, p);
        p += 8;
        len -= 8;
    }
    while (len--)
        crc0 = crc32c_b(crc0, p++);
    return ~(uint32_t)crc0;
}

#endif
