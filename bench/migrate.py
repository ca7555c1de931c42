"""Benchmark: live migration of a task holding MIB MiB (1 GiB) of touched data that rewrites a
64 MiB hot set without pause, to `crpy receive` over loopback (images on /dev/shm).  Each rep
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
    for (uint64_t gen = 1;; gen++)
        for (size_t i = 0; i < hot; i += 4096)
            *(volatile uint64_t *)(p + i) = gen;
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


def _migrate(exe, mib, workdir, rounds, lazy=False, eager=False):
    """One migration of a fresh writer; ((frozen s, of which the restore s), [(pages, MiB sent)] per round)."""
    ready = os.path.join(workdir, "ready")
    target = common.start_target([exe, str(mib), str(HOT_MIB), ready], ready, "bench.migrate: the writer",
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


def run(reps=3, mib=1024):
    with common.child_subreaper(), common.work_dir("crpy-bench-mig-") as workdir:
        exe = common.build_c(workdir, "writer", WRITER_C, "-O2")
        kinds = ("pre", "pre-eager", "stop", "lazy", "pre+lazy")
        runs, last = {k: [] for k in kinds}, None
        for n in range(reps):
            for kind in kinds[n % 5:] + kinds[:n % 5]:
                frozen, sent = _migrate(exe, mib, workdir, 5 if kind.startswith("pre") else 0,
                                        lazy=kind.endswith("lazy"), eager=kind in ("pre-eager", "stop"))
                runs[kind].append(frozen)
                if kind == "pre":
                    last = sent
    pre, stop, lazy = runs["pre"], runs["stop"], runs["lazy"]
    p, s = statistics.median(f for f, _ in pre), statistics.median(f for f, _ in stop)
    z = statistics.median(f for f, _ in lazy)
    pz = statistics.median(f for f, _ in runs["pre+lazy"])

    def row(name, runs, med):
        return (f"  {name:14s} {med * 1e3:8.1f} ms  (min {min(f for f, _ in runs) * 1e3:.1f} ms; of which the "
                f"destination's restore {statistics.median(r for _, r in runs) * 1e3:.1f} ms)")

    lines = [f"migrate: {mib} MiB task rewriting a {HOT_MIB} MiB hot set, loopback, {reps} reps (median frozen):",
             row("pre-copy", pre, p),
             row("pre-copy eager", runs["pre-eager"], statistics.median(f for f, _ in runs["pre-eager"])),
             row("stop-and-copy", stop, s), row("lazy", lazy, z),
             row("pre-copy+lazy", runs["pre+lazy"], pz),
             f"  pre-copy/stop-and-copy {p / s:.3f} (aim <= 0.1); lazy/stop-and-copy {z / s:.3f}; "
             f"pre-copy+lazy/stop-and-copy {pz / s:.3f}",
             "  rounds of the last pre-copy (pages, MiB sent): " + ", ".join(f"{n} {m:.1f}" for n, m in last)]
    return lines


if __name__ == "__main__":
    for line in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 1024):
        print(line)
