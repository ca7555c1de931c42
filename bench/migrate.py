"""Benchmark: live migration of a task holding MIB MiB (1 GiB) of touched data that rewrites a
64 MiB hot set without pause, to `crpy receive` over loopback (images on /dev/shm); then the
same for a task that writes fresh pages through all its memory at 100 MiB/s (pre-copy,
stop-and-copy and lazy only).  Each rep
migrates one such task with pre-copy (`crpy migrate`, rounds until the dirty set stops shrinking;
the destination restores lazily from the pages it has, --restore-mode lazy), the same with
`--restore-mode eager` (the whole memory filled before the tree runs), one with none
(`--max-rounds 0 --restore-mode eager`: stop-and-copy, i.e. dump + send + restore, all frozen) and one
post-copy (`--lazy --max-rounds 0`: the final dump keeps the pages on the source, the destination
runs at once and fetches them) and one pre-copy then post-copy (`--lazy`, rounds as pre-copy's),
in rotating order; printed: the median frozen time of each and the
ratios to stop-and-copy (aim: pre-copy at most 1/10), and the pages and MiB sent per round of the
last pre-copy migration.
run(reps) -> printed lines; `python3 -m bench.migrate [reps] [MiB]` runs it alone."""

import os
import re
import statistics
import subprocess
import sys
import time

from bench import common

HOT_MIB = 64
WRITER_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    size_t size = (size_t)atol(argv[1]) << 20, hot = (size_t)atol(argv[2]) << 20;
    unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t x = 88172645463325252ULL;
    if (p == MAP_FAILED)
        return 1;
    for (size_t i = 0; i < size; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        *(uint64_t *)(p + i) = x;
    }
    FILE *f = fopen(argv[3], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    double rate = argc > 4 ? atof(argv[4]) * (1 << 20) : 0;     /* bytes/s; 0: the hot set, flat out */
    if (rate == 0)
        for (uint64_t gen = 1;; gen++)
            for (size_t i = 0; i < hot; i += 4096)
                *(volatile uint64_t *)(p + i) = gen;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double done = 0;
    for (uint64_t gen = 1;; gen++)
        for (size_t i = 0; i < size; i += 4096) {
            *(volatile uint64_t *)(p + i) = gen;
            done += 4096;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double ahead = done / rate - ((now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9);
            if (ahead > 0.001)
                usleep((useconds_t)(ahead * 1e6));
        }
}
"""


def _receive(dst):
    proc = subprocess.Popen([sys.executable, "-m", "crpy", "receive", "--listen", "0", "--address", "127.0.0.1",
                             "-D", dst], cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"bench.migrate: crpy receive did not start: {proc.communicate()[1].strip()}")
    return proc, int(line.rsplit(":", 1)[1])


def _migrate(exe, mib, workdir, rounds, lazy=False, eager=False, rate=0):
    """One migration of a fresh writer (rate: MiB/s of fresh pages through all its memory; 0: the
    hot set); ((frozen s, of which the restore s), [(pages, MiB sent)] per round)."""
    ready = os.path.join(workdir, "ready")
    target = common.start_target([exe, str(mib), str(HOT_MIB), ready, str(rate)], ready, "bench.migrate: the writer",
                                 timeout=120, new_session=False)
    with common.killed_after([target.pid]), common.image_dir("crpy-bench-mig-") as imgs:
        receiver, port = _receive(os.path.join(imgs, "dst"))
        args = [sys.executable, "-m", "crpy", "migrate", "-t", str(target.pid), "--to", f"127.0.0.1:{port}",
                "--max-rounds", str(rounds), "-D", os.path.join(imgs, "src")] + (["--lazy"] if lazy else []) \
            + (["--restore-mode", "eager"] if eager else [])
        mig = subprocess.Popen(args, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while mig.poll() is None:
            target.poll()                 # reaps the source once the final dump killed it
            time.sleep(0.005)
        out, err = mig.communicate()
        receiver.communicate(timeout=60)
        if mig.returncode:
            raise SystemExit(f"bench.migrate: crpy migrate failed: {err.strip()}")
    m = re.search(r"frozen ([0-9.]+) s \(restore there ([0-9.]+) s\)", out)
    sent = [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"(\d+) pages, ([0-9.]+) MiB sent", out)]
    return (float(m.group(1)), float(m.group(2))), sent


SWEEP_MIB_S = 100


def _rounds(exe, mib, workdir, reps, kinds, rate):
    """{kind: [(frozen, restore)]} and the last pre-copy's rounds, kinds in rotating order."""
    runs, last = {k: [] for k in kinds}, None
    for n in range(reps):
        for kind in kinds[n % len(kinds):] + kinds[:n % len(kinds)]:
            frozen, sent = _migrate(exe, mib, workdir, 5 if kind.startswith("pre") else 0,
                                    lazy=kind.endswith("lazy"), eager=kind in ("pre-eager", "stop"), rate=rate)
            runs[kind].append(frozen)
            if kind == "pre":
                last = sent
    return runs, last


def _report(title, runs, last):
    def med(kind):
        return statistics.median(f for f, _ in runs[kind])

    names = {"pre": "pre-copy", "pre-eager": "pre-copy eager", "stop": "stop-and-copy", "lazy": "lazy",
             "pre+lazy": "pre-copy+lazy"}
    lines = [title]
    for kind, name in names.items():
        if kind in runs:
            lines.append(f"  {name:14s} {med(kind) * 1e3:8.1f} ms  (min {min(f for f, _ in runs[kind]) * 1e3:.1f} ms; "
                         f"of which the destination's restore {statistics.median(r for _, r in runs[kind]) * 1e3:.1f} ms)")
    s = med("stop")
    lines.append(f"  pre-copy/stop-and-copy {med('pre') / s:.3f} (aim <= 0.1); lazy/stop-and-copy {med('lazy') / s:.3f}"
                 + (f"; pre-copy+lazy/stop-and-copy {med('pre+lazy') / s:.3f}" if "pre+lazy" in runs else ""))
    lines.append("  rounds of the last pre-copy (pages, MiB sent): " + ", ".join(f"{n} {m:.1f}" for n, m in last))
    return lines


def run(reps=3, mib=1024):
    with common.child_subreaper(), common.work_dir("crpy-bench-mig-") as workdir:
        exe = common.build_c(workdir, "writer", WRITER_C, "-O2")
        hot = _rounds(exe, mib, workdir, reps, ("pre", "pre-eager", "stop", "lazy", "pre+lazy"), 0)
        sweep = _rounds(exe, mib, workdir, reps, ("pre", "stop", "lazy"), SWEEP_MIB_S)
    return (_report(f"migrate: {mib} MiB task rewriting a {HOT_MIB} MiB hot set, loopback, {reps} reps "
                    "(median frozen):", *hot)
            + _report(f"migrate: {mib} MiB task writing fresh pages through all of it at {SWEEP_MIB_S} MiB/s, "
                      f"loopback, {reps} reps (median frozen):", *sweep))

if __name__ == "__main__":
    for line in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 1024):
        print(line)
