/* Target of test_predump.py: memory that changes between pre-dump rounds.  Run as
 * `predump_target OUTFILE`; writes "ready", then on each SIGUSR1 does one step (writes pages of
 * region 0, maps a new region, unmaps an older one, moves region 1, grows region 2, reads
 * region 3) and writes "step N".  On SIGTERM it checks every page of every live region against
 * the pattern of the step that last wrote it and writes PASS or FAIL.  ZDTM_BREAK=1 damages a
 * page first (the check must then fail). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096UL
#define NREG 64
#define MAXPG 256

struct region { char *addr; size_t pages; int id; uint64_t ver[MAXPG]; };
static struct region regs[NREG];
static int nregs;
static volatile sig_atomic_t usr1, term;
static const char *outfile;

static void say(const char *s)
{
    FILE *f = fopen(outfile, "a");
    if (f) { fputs(s, f); fclose(f); }
}

static void fill(char *p, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < PG; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

static uint64_t seed(int id, size_t page, uint64_t ver) { return id * 1000003ULL + page * 7919ULL + ver * 104729ULL; }

static void write_page(struct region *r, size_t page, uint64_t ver)
{
    r->ver[page] = ver;
    fill(r->addr + page * PG, seed(r->id, page, ver));
}

static struct region *add(size_t pages, int id, uint64_t ver)
{
    struct region *r = &regs[nregs++];
    r->addr = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->addr == MAP_FAILED) { say("FAIL: mmap\n"); exit(1); }
    r->pages = pages; r->id = id;
    for (size_t i = 0; i < pages; i++)
        write_page(r, i, ver);
    return r;
}

static void step(uint64_t k)
{
    char line[64];
    volatile char sink = 0;

    for (int i = 0; i < 3; i++)                       /* region 0: a few pages written */
        write_page(&regs[0], (k * 3 + i) % regs[0].pages, k);
    add(8, 100 + (int)k, k);                          /* a new region */
    if (k >= 2 && k % 2 == 0) {                        /* unmap the oldest step region */
        for (int i = 4; i < nregs; i++) {
            munmap(regs[i].addr, regs[i].pages * PG);
            regs[i] = regs[--nregs];
            break;
        }
    }
    /* region 1 moves to a new address (mremap loses the tracking registration) */
    char *to = mmap(NULL, regs[1].pages * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    regs[1].addr = mremap(regs[1].addr, regs[1].pages * PG, regs[1].pages * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    /* region 2 grows by 4 pages, the new ones written */
    size_t old = regs[2].pages;
    if (old + 4 <= MAXPG) {
        regs[2].addr = mremap(regs[2].addr, old * PG, (old + 4) * PG, MREMAP_MAYMOVE);
        regs[2].pages = old + 4;
        for (size_t i = old; i < old + 4; i++)
            write_page(&regs[2], i, k);
    }
    for (size_t i = 0; i < regs[3].pages; i++)        /* region 3: only read */
        sink += regs[3].addr[i * PG];
    if (regs[1].addr == MAP_FAILED || regs[2].addr == MAP_FAILED) { say("FAIL: mremap\n"); exit(1); }
    snprintf(line, sizeof(line), "step %llu\n", (unsigned long long)k);
    say(line);
}

static void on_usr1(int s) { (void)s; usr1 = 1; }
static void on_term(int s) { (void)s; term = 1; }

int main(int argc, char **argv)
{
    sigset_t block, old;
    uint64_t k = 0;
    long bad = 0;
    char line[128];

    outfile = argv[argc - 1];
    add(64, 0, 0);
    add(16, 1, 0);
    add(4, 2, 0);
    add(32, 3, 0);
    signal(SIGUSR1, on_usr1);
    signal(SIGTERM, on_term);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    say("ready\n");
    while (!term) {
        sigsuspend(&old);
        if (usr1) { usr1 = 0; step(++k); }
    }
    if (getenv("ZDTM_BREAK") && getenv("ZDTM_BREAK")[0] == '1')
        regs[0].addr[5] ^= 1;
    char *want = malloc(PG);
    for (int i = 0; i < nregs; i++)
        for (size_t p = 0; p < regs[i].pages; p++) {
            fill(want, seed(regs[i].id, p, regs[i].ver[p]));
            if (memcmp(want, regs[i].addr + p * PG, PG)) {
                if (!bad++) {
                    snprintf(line, sizeof(line), "FAIL: region %d page %zu differs (step %llu)\n",
                             regs[i].id, p, (unsigned long long)regs[i].ver[p]);
                    say(line);
                }
            }
        }
    if (!bad)
        say("PASS\n");
    return 0;
}
