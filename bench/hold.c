/* Benchmark target: holds N MiB of touched pseudo-random data, then sleeps until killed.
 * Usage: hold MIB PIDFILE.  Writes its pid to PIDFILE once every page is written. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t len = (size_t)atol(argv[1]) << 20;
    uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    FILE *f;

    if (mem == MAP_FAILED || setsid() < 0)
        return 1;
    madvise(mem, len, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < len / 8; i++) {      /* xorshift64: cheap, incompressible */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        mem[i] = x;
    }
    f = fopen(argv[2], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;)
        pause();
}
