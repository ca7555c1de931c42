"""Benchmark: dump and restore of one process with 64 threads (the main one and 63 in pause()),
images on /dev/shm; milliseconds per thread each way (whole command time / 64; aim: under
10 ms), next to the same commands for a single-threaded process.
run(reps) -> printed lines; `python3 -m bench.threads [reps]` runs it alone."""

import os
import statistics

from bench import common

THREADS = 64
SLEEPER_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *sleeper(void *arg) { (void)arg; for (;;) pause(); return NULL; }
int main(int argc, char **argv)
{
    int n = atoi(argv[1]);
    pthread_t t;
    for (int i = 1; i < n; i++)
        pthread_create(&t, NULL, sleeper, NULL);
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def _nr_threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def _one_round(exe, workdir, n):
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, str(n), ready], ready, "bench.threads: the process")
    with common.killed_after([p.pid]), common.image_dir("crpy-bench-threads-") as imgs:
        dump, restore = common.dump_then_restore("bench.threads", p, imgs)
        if _nr_threads(p.pid) != n:
            raise SystemExit(f"bench.threads: {_nr_threads(p.pid)} threads restored, not {n}")
        return dump, restore


def run(reps=3):
    with common.child_subreaper(), common.work_dir("crpy-bench-threads-") as workdir:
        exe = common.build_c(workdir, "threads", SLEEPER_C, "-O1", "-pthread")
        many = [_one_round(exe, workdir, THREADS) for _ in range(reps)]
        one = [_one_round(exe, workdir, 1) for _ in range(reps)]
    lines = [f"one process with {THREADS} threads, {reps} reps (median, min), ms per thread:"]
    for name, k in (("dump", 0), ("restore", 1)):
        whole = (f"; whole command {statistics.median(r[k] for r in many):.3f} s, single-threaded "
                 f"process {statistics.median(r[k] for r in one):.3f} s")
        lines.append(common.ms_line(name, [r[k] / THREADS for r in many], more=whole) + "  target < 10 ms")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
