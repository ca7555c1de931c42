"""Benchmark: what a pre-dump round costs the task it copies, images on /dev/shm.

1. Frozen time of a 1 GiB task (touched random data, idle): a plain `crpy dump -R` against a
   first pre-dump round (--pre-dump-mode splice and read: the pages are copied after the resume)
   and a second round with nothing written.  The task itself measures it: it checks the clock
   every 100 us and records the longest gap (the freeze as it saw it); crpy's own frozen_s is
   printed beside it.
2. Tracking overhead: a task rewriting a 64 MiB hot set of a 256 MiB area counts its page writes
   per second, untracked, then with tracking armed by one round (each page pays one
   write-protect fault, then runs free), then with rounds back to back (also counted over the
   time it was not frozen: the faults and the competition for the CPUs alone).  Percent slower
   than untracked, medians of back-to-back triples on one fresh task each.
run(reps) -> printed lines; `python3 -m bench.predump [reps]` runs it alone.
"""

import mmap
import os
import statistics
import struct
import time

from bench import common

WINDOW = 1.0                       # seconds per rate measurement
TARGET_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
/* target MIB HOT_MIB SHMFILE PIDFILE: touches MIB of random data; then rewrites the first
   HOT_MIB of it page after page without pause (HOT_MIB 0: idles, checking the clock every 100 us).
   SHMFILE holds [writes, longest gap ns, reset flag] for the benchmark to read. */
static uint64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
int main(int argc, char **argv)
{
    size_t len = (size_t)atol(argv[1]) << 20, hot = ((size_t)atol(argv[2]) << 20) / 4096;
    uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = open(argv[3], O_RDWR);
    volatile uint64_t *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    uint64_t x = 0x9E3779B97F4A7C15ull, last, t;
    struct timespec tick = {0, 100000};
    FILE *f;
    if (mem == MAP_FAILED || sh == MAP_FAILED)
        return 1;
    madvise(mem, len, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < len / 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; mem[i] = x; }
    f = fopen(argv[4], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    last = now();
    for (size_t p = 0;; p = hot ? (p + 1) % hot : 0) {
        if (hot) {
            mem[p * 512] = ++x;
            sh[0]++;
            if (p % 64)
                continue;
        } else {
            nanosleep(&tick, NULL);
        }
        t = now();
        if (sh[2]) { sh[1] = 0; sh[2] = 0; }
        else if (t - last > sh[1]) sh[1] = t - last;
        last = t;
    }
}
"""


class _Target:
    """The C target and its shared counters."""

    def __init__(self, exe, workdir, mib, hot_mib):
        self.shm_path = os.path.join("/dev/shm", f"crpy-bench-predump-{os.getpid()}")
        with open(self.shm_path, "wb") as f:
            f.write(bytes(4096))
        self.shm_fd = os.open(self.shm_path, os.O_RDWR)
        self.shm = mmap.mmap(self.shm_fd, 4096)
        ready = os.path.join(workdir, "ready")
        self.proc = common.start_target([exe, str(mib), str(hot_mib), self.shm_path, ready], ready,
                                        "bench.predump: the target", timeout=120)
        self.pid = self.proc.pid

    def writes(self):
        return struct.unpack_from("<Q", self.shm, 0)[0]

    def reset_gap(self):
        struct.pack_into("<Q", self.shm, 16, 1)
        time.sleep(0.01)

    def gap(self):
        return struct.unpack_from("<Q", self.shm, 8)[0] / 1e9

    def close(self):
        self.shm.close()
        os.close(self.shm_fd)
        os.unlink(self.shm_path)


def _frozen_round(exe, workdir):
    """{what: (frozen as the task saw it, crpy's frozen_s or command time)} on a fresh 1 GiB task."""
    from crpy import api

    out = {}
    t = _Target(exe, workdir, 1024, 0)
    with common.killed_after([t.pid]), common.image_dir("crpy-bench-predump-") as imgs:
        try:
            for what, run in (("dump -R", lambda d: api.dump(t.pid, d, leave_running=True)),
                              ("pre-dump read, round 1", lambda d: api.pre_dump(t.pid, d, pre_dump_mode="read")),
                              ("pre-dump splice, round 1", lambda d: api.pre_dump(t.pid, d)),
                              ("pre-dump splice, round 2", lambda d: api.pre_dump(
                                  t.pid, d, prev_images_dir="../pre-dump splice, round 1"))):
                d = os.path.join(imgs, what)
                os.mkdir(d)
                t.reset_gap()
                t0 = time.perf_counter()
                stats = run(d)
                wall = time.perf_counter() - t0
                time.sleep(0.05)
                out[what] = (t.gap(), stats.get("frozen_s", wall))
                if what.startswith("pre-dump read"):       # round 1 of splice starts afresh
                    _drop_tracking(t.pid)
        finally:
            t.close()
    return out


def _drop_tracking(pid):
    """End the tracking holder of pid (it lends its fds and, never given them back, ends)."""
    import socket

    from crpy.dump.memtrack_holder import socket_name

    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(socket_name(pid))
        s.send(b"lend")
        _, fds, _, _ = socket.recv_fds(s, 1 << 16, 253)
        for fd in fds:
            os.close(fd)
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.2)


def _rate(t, window=WINDOW, during=None):
    """Page writes per second of the target over `window` s, running during() meanwhile."""
    w0, t0 = t.writes(), time.perf_counter()
    while time.perf_counter() - t0 < window:
        if during:
            during()
        else:
            time.sleep(0.05)
    return (t.writes() - w0) / (time.perf_counter() - t0)


def _overhead_round(exe, workdir):
    """(untracked, armed once, rounds back to back) page writes per second of one fresh task."""
    from crpy import api

    t = _Target(exe, workdir, 256, 64)
    with common.killed_after([t.pid]), common.image_dir("crpy-bench-predump-") as imgs:
        try:
            _rate(t, 0.3)                                          # warm up
            free = _rate(t)
            os.mkdir(os.path.join(imgs, "r1"))
            api.pre_dump(t.pid, os.path.join(imgs, "r1"))
            armed = _rate(t)
            rounds, frozen = [1], []

            def one_more():
                n = rounds[0] + 1
                os.mkdir(os.path.join(imgs, f"r{n}"))
                stats = api.pre_dump(t.pid, os.path.join(imgs, f"r{n}"), prev_images_dir=f"../r{n - 1}")
                frozen.append(stats["frozen_s"])
                rounds[0] = n
            w0, t0 = t.writes(), time.perf_counter()
            busy = _rate(t, during=one_more)
            running = (t.writes() - w0) / (time.perf_counter() - t0 - sum(frozen))
        finally:
            t.close()
    return free, armed, busy, rounds[0] - 1, running, sum(frozen)


def run(reps=3):
    with common.child_subreaper(), common.work_dir("crpy-bench-predump-") as workdir:
        exe = common.build_c(workdir, "predump_target", TARGET_C, "-O2")
        frozen = [_frozen_round(exe, workdir) for _ in range(reps)]
        over = [_overhead_round(exe, workdir) for _ in range(reps)]
    lines = [f"pre-dump of a 1 GiB task, {reps} reps (median, min); frozen time as the task saw it:"]
    for what in frozen[0]:
        seen = [r[what][0] for r in frozen]
        crpy_s = statistics.median(r[what][1] for r in frozen)
        lines.append(common.ms_line(f"{what:25s}", seen, more=f"; crpy says {crpy_s * 1e3:.1f} ms"))
    dump_ms = statistics.median(r["dump -R"][0] for r in frozen)
    pre_ms = statistics.median(r["pre-dump splice, round 1"][0] for r in frozen)
    lines.append(f"  a first pre-dump round freezes the task {dump_ms / max(pre_ms, 1e-9):.1f}x shorter than a dump")
    lines.append(f"tracking overhead on a task rewriting a 64 MiB hot set of 256 MiB, {reps} reps (median):")
    free = statistics.median(r[0] for r in over)
    for name, k in (("armed by one round", 1), ("rounds back to back", 2), ("  the same, running", 4)):
        pct = statistics.median((r[0] - r[k]) / r[0] * 100 for r in over)
        extra = (f", {statistics.median(r[3] for r in over):.0f} rounds per {WINDOW:.0f} s, frozen "
                 f"{statistics.median(r[5] for r in over):.2f} s of it" if k == 2 else
                 ", frozen time left out" if k == 4 else "")
        lines.append(f"  {name:20s} {pct:5.1f} % slower (untracked {free / 1e6:.2f} M page writes/s{extra})")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
