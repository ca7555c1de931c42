/* Benchmark target for compression: holds N MiB of touched memory of a realistic mix, then sleeps.
 * Usage: mixed MIB TEXTFILE PIDFILE.  Each 64 KiB piece is, in turn: pseudo-random (incompressible),
 * text (TEXTFILE, e.g. Python sources, repeated), zeros written by the program, and heap-like records
 * (pointers to neighbours, small counters, doubles).  Writes its pid to PIDFILE once ready. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PIECE (64 << 10)

struct record { struct record *next, *prev; uint32_t refs, kind; double value; uint64_t hash; };

int main(int argc, char **argv)
{
    size_t len = (size_t)atol(argv[1]) << 20, text_len;
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static char text[1 << 20];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    FILE *f = fopen(argv[2], "r");

    if (mem == MAP_FAILED || !f || setsid() < 0)
        return 1;
    text_len = fread(text, 1, sizeof(text), f);
    fclose(f);
    if (text_len < PIECE)
        return 1;
    madvise(mem, len, MADV_NOHUGEPAGE);
    for (size_t off = 0, n = 0; off < len; off += PIECE, n++) {
        char *p = mem + off;
        switch (n % 4) {
        case 0:
            for (size_t i = 0; i < PIECE / 8; i++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                ((uint64_t *)p)[i] = x;
            }
            break;
        case 1:
            memcpy(p, text + (n * 4099) % (text_len - PIECE), PIECE);
            break;
        case 2:
            memset(p, 0, PIECE);
            break;
        default: {
            struct record *r = (struct record *)p;
            size_t count = PIECE / sizeof(*r);
            for (size_t i = 0; i < count; i++) {
                r[i].next = &r[(i + 1) % count];
                r[i].prev = &r[(i + count - 1) % count];
                r[i].refs = 1 + i % 3;
                r[i].kind = (uint32_t)(n % 7);
                r[i].value = (double)i * 0.5;
                r[i].hash = (uint64_t)i * 0x9E3779B97F4A7C15ull >> 40;
            }
        }
        }
    }
    f = fopen(argv[3], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;)
        pause();
}
