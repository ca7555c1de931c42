"""Why one pages-N.img on tmpfs is filled by one writer: the ways to fill a 1 GiB file on /dev/shm,
by 1 and 2 threads, wall and CPU per GiB (the measurement crpy.dump.pages rests on).

    pwrite         write(2) at disjoint offsets: tmpfs allocates and copies each 4 KiB page
                   under the file's inode lock, so 2 threads take about as long as 1
    mmap-fault     a shared mapping of the file, a window at a time, written by memcpy: page
                   faults take no inode lock, but each page costs a fault, zeroing and an unmap
    mmap-populate  the same, pages allocated first by MADV_POPULATE_WRITE

The source is 1 GiB of touched memory in this process, as a stopped task's pages would be.
Best and mean of reps.  `python3 -m bench.tmpfs_write [reps]`."""

import os
import subprocess

from bench import common

SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#define GIB (1UL << 30)
#define WIN (8UL << 20)
static char *src;
struct job { int fd, mode; off_t off; size_t len; };
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static double cpu(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}
static void *run(void *a)
{
    struct job *j = a;
    for (size_t p = 0; p < j->len; p += WIN) {
        off_t o = j->off + p;
        if (j->mode == 0) {
            if (pwrite(j->fd, src + o, WIN, o) != (ssize_t)WIN)
                exit(2);
            continue;
        }
        char *m = mmap(0, WIN, PROT_READ | PROT_WRITE, MAP_SHARED, j->fd, o);
        if (m == MAP_FAILED)
            exit(3);
        if (j->mode == 2)
            madvise(m, WIN, 23);                    /* MADV_POPULATE_WRITE */
        memcpy(m, src + o, WIN);
        munmap(m, WIN);
    }
    return 0;
}
int main(int argc, char **argv)
{
    const char *path = argv[1];
    int reps = atoi(argv[2]);
    const char *names[] = {"pwrite", "mmap-fault", "mmap-populate"};
    src = malloc(GIB);
    memset(src, 7, GIB);
    for (int mode = 0; mode < 3; mode++)
        for (int th = 1; th <= 2; th++) {
            double best = 1e9, wall = 0, used = 0;
            for (int r = 0; r < reps; r++) {
                int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
                pthread_t t[2];
                struct job j[2];
                if (fd < 0 || ftruncate(fd, GIB))
                    return 1;
                double w0 = now(), c0 = cpu();
                for (int i = 0; i < th; i++) {
                    j[i] = (struct job){fd, mode, i * GIB / th, GIB / th};
                    pthread_create(&t[i], 0, run, &j[i]);
                }
                for (int i = 0; i < th; i++)
                    pthread_join(t[i], 0);
                double w = now() - w0;
                wall += w, used += cpu() - c0, best = w < best ? w : best;
                close(fd);
                unlink(path);
            }
            printf("  %-14s %d thread%s  wall best %5.0f ms, mean %5.0f ms; CPU mean %5.0f ms\n", names[mode], th,
                   th > 1 ? "s" : " ", best * 1e3, wall / reps * 1e3, used / reps * 1e3);
        }
    return 0;
}
"""


def run(reps=3):
    with common.work_dir("crpy-bench-tmpfs-") as workdir:
        exe = common.build_c(workdir, "tmpfs_write", SOURCE, "-O2", "-pthread")
        path = os.path.join("/dev/shm", f"crpy-bench-tmpfs-{os.getpid()}")
        try:
            out = subprocess.run([exe, path, str(reps)], check=True, capture_output=True, text=True).stdout
        finally:
            if os.path.exists(path):
                os.unlink(path)
    return ["tmpfs: filling one 1 GiB file on /dev/shm, per GiB:"] + out.splitlines()


if __name__ == "__main__":
    common.run_alone(run)
