"""`make bench`: how fast crpy dumps and restores, against a baseline measured in the same run.

Target: a process holding 1 GiB of touched random data; images on /dev/shm.  Baseline:
process_vm_readv of the same memory into a reused 64 MiB buffer (the cheapest way to read it out).
Timings on these VMs swing 2-5x, so every figure is the median (and minimum) of several
alternating runs.  The cost of the image digests (crpy-digests): each round dumps two targets
back to back, one with digests and one with --skip-integrity (in alternating order; before its
own, the first is dumped in two such pairs with --leave-running, for more pairs), then
restores the image set with digests in three back-to-back pairs, checked and with
--skip-integrity (a restore is half a second: one pair a round left its ratio to the machine's
mood; and two image sets restored alike differ by 5-10% by which was dumped first, measured on
2026-12-04, which is no cost of the check), and the median of the pairs' ratios is printed, with
crpy's own CPU time with and without
(the hashing's price where a loaded machine makes the wall ratios swing), and the restored
task's CPU with and without (it hashes the pages it reads: crpy.restore.pagecheck).  crpy's own peak
RSS (GNU time's %M) is printed for those runs and for one round with a 4 GiB task (--rss-mib;
target: under 64 MiB).  As in bench/startup.py, crpy runs from .pyc files (common.bytecode_cached,
warmed by one uncounted round with a 16 MiB task), as an installed crpy does.
Run as root from the project root:
    python3 -m bench.run [--reps N] [--mib N] [--rss-mib N] [--only-memory]
"""

import argparse
import importlib
import os
import signal
import statistics
import time

from bench import common

# Further benchmarks, each a module of bench/ with run(reps) -> printed lines.
EXTRA_BENCHES = ["tmpfs_huge", "tree", "threads", "files", "epoll", "digests", "startup", "predump", "compress", "migrate",
                 "lazy", "tcp"]


def heap_ranges(pid, min_len):
    """The target's big anonymous mappings (the data it holds)."""
    out = []
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split()
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if len(parts) < 6 and end - start >= min_len:
            out.append((start, end))
    return out


def baseline_pvr(pid, mib):
    """process_vm_readv of the target's data into a reused 64 MiB buffer."""
    from crpy.kernel._sys import ffi, lib

    chunk = 64 << 20
    buf = ffi.new("char[]", chunk)
    local, remote = ffi.new("struct iovec *"), ffi.new("struct iovec *")
    local.iov_base, local.iov_len = buf, chunk
    os.kill(pid, signal.SIGSTOP)
    t0 = time.perf_counter()
    for start, end in heap_ranges(pid, (mib << 20) // 2):
        for addr in range(start, end, chunk):
            remote.iov_base = ffi.cast("void *", addr)
            remote.iov_len = min(chunk, end - addr)
            local.iov_len = remote.iov_len
            if lib.process_vm_readv(pid, local, 1, remote, 1, 0) != remote.iov_len:
                raise SystemExit("bench: process_vm_readv failed")
    dt = time.perf_counter() - t0
    os.kill(pid, signal.SIGCONT)
    return dt


def one_round(exe, mib, workdir, n, peaks=None, restores=3):
    """(baseline, [(dump, restore)] with digests, the same without, crpy's CPU seconds of
    [(dump, restore)] with digests, the same without, the restored task's CPU seconds with
    digests, without): two targets, one dumped with digests and one with --skip-integrity (the
    order alternating with n), then `restores` back-to-back pairs of restores of the image set
    with digests, checked and with --skip-integrity (the order alternating), the restored task
    killed after each: a restore is short, so several pairs per round make the ratio less of a
    draw, and the same images on both sides leave the check as the only difference.
    peaks: a list to which crpy's (dump, restore) peak RSS in MiB are appended."""
    order = (True, False) if n % 2 == 0 else (False, True)
    times, cpus, task_cpus, pids = ({True: [], False: []} for _ in range(4))
    extra = {True: (), False: ("--skip-integrity",)}
    base = None
    with common.image_dir("crpy-bench-") as with_digests, common.image_dir("crpy-bench-") as without:
        dirs = {True: with_digests, False: without}
        for digests in order:
            pidfile = os.path.join(workdir, "hold.pid")
            proc = common.start_target([exe, str(mib), pidfile], pidfile, "bench: the target", timeout=120,
                                       new_session=False)
            with common.killed_after([proc.pid]):
                if base is None:
                    base = baseline_pvr(proc.pid, mib)
                    more_dumps = _leave_running_pairs(proc.pid, extra, order, 2)
                dump, rss, cpu = common.crpy_run("bench", "dump", "-t", str(proc.pid), "-D", dirs[digests],
                                                 *extra[digests])
                proc.wait()
                common.wait_gone([proc.pid])
            pids[digests] = (proc.pid, dump, rss, cpu)
        for k in range(restores):
            for digests in (order if k % 2 == 0 else order[::-1]):
                _, dump, dump_rss, dump_cpu = pids[digests]
                pid = pids[True][0]                 # the image set with digests, either way
                with common.killed_after([pid]):
                    restore, rss, cpu = common.crpy_run("bench", "restore", "-d", "-D", dirs[True],
                                                        *extra[digests])
                    task_cpus[digests].append(_task_cpu(pid))
                times[digests].append((dump, restore))
                cpus[digests].append((dump_cpu, cpu))
                if peaks is not None:
                    peaks.append((dump_rss, rss))
    return (base, times[True], times[False], cpus[True], cpus[False], task_cpus[True], task_cpus[False],
            more_dumps)


def _leave_running_pairs(pid, extra, order, pairs):
    """[(seconds with digests, without, crpy's CPU with, without, the target's CPU (the parasite's
    work: it hashes the pages it sends) with, without)] of `pairs` back-to-back pairs
    of `crpy dump --leave-running` of the same target (the same page step as a dump that kills;
    several pairs a round for the digests' dump cost, as for the restore's)."""
    out = []
    for k in range(pairs):
        got = {}
        for digests in (order if k % 2 == 0 else order[::-1]):
            with common.image_dir("crpy-bench-") as scratch:
                before = _task_cpu(pid)
                got[digests] = common.crpy_run("bench", "dump", "--leave-running", "-t", str(pid), "-D", scratch,
                                               *extra[digests]) + (_task_cpu(pid) - before,)
        out.append((got[True][0], got[False][0], got[True][2], got[False][2], got[True][3], got[False][3]))
    return out


def _task_cpu(pid):
    """CPU seconds (user+sys) the restored target has used: its part of the restore (premap, and
    the check of its pages as it reads them), the target then sleeping."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(name, times, gib):
    med, best = statistics.median(times), min(times)
    print(f"{name:<28} median {med:7.3f} s  {gib / med:6.2f} GiB/s   (best {best:.3f} s, {gib / best:.2f} GiB/s)")
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rss-mib", type=int, default=4096,
                    help="size of the task whose dump and restore measure crpy's peak RSS (0: skip)")
    ap.add_argument("--only-memory", action="store_true", help="skip the further benchmarks")
    args = ap.parse_args()
    notes = []
    with common.steady_host_memory(notes):
        _measure(args, notes)


def _measure(args, notes):
    peaks, big_peaks = [], []
    with common.child_subreaper(), common.work_dir("crpy-bench-") as workdir, common.bytecode_cached(workdir):
        with open(os.path.join(common.ROOT, "bench", "hold.c")) as f:
            exe = common.build_c(workdir, "hold", f.read(), "-O2")
        one_round(exe, 16, workdir, 0)          # warm-up: writes the .pyc files
        rows = [one_round(exe, args.mib, workdir, n, peaks) for n in range(args.reps)]
        if args.rss_mib:
            one_round(exe, args.rss_mib, workdir, 0, big_peaks)
    gib = args.mib / 1024
    print(f"crpy bench: {args.mib} MiB of touched random data, images on /dev/shm, {args.reps} rounds")
    for line in notes:
        print(line)
    base = report("baseline process_vm_readv", [r[0] for r in rows], gib)
    # per round one dump of each kind; per round `restores` restores of each
    dumps = {k: [r[k][0][0] for r in rows] for k in (1, 2)}
    restores = {k: [t[1] for r in rows for t in r[k]] for k in (1, 2)}
    dump = report("crpy dump", dumps[1], gib)
    restore = report("crpy restore", restores[1], gib)
    report("crpy dump, no digests", dumps[2], gib)
    report("crpy restore, no check", restores[2], gib)
    print(f"ratio dump/baseline {dump / base:.2f}x, restore/baseline {restore / base:.2f}x, "
          f"restore/dump {restore / dump:.2f}x")
    pairs = {"dump": [(r[1][0][0], r[2][0][0], r[3][0][0], r[4][0][0]) for r in rows] + [p for r in rows for p in r[7]],
             "restore": [(a[1], b[1], ca[1], cb[1]) for r in rows for a, b, ca, cb in zip(r[1], r[2], r[3], r[4])]}
    for what, got in pairs.items():
        ratios = sorted(p[0] / p[1] for p in got)
        print(f"digests cost: {what} with/without, median of {len(got)} pairs {statistics.median(ratios):.3f}x "
              f"(pairs {' '.join(f'{x:.3f}' for x in ratios)})")
        # crpy's own CPU (its threads too; not the restored task's): the hashing's real price,
        # which the wall ratios above show only on a quiet machine
        with_cpu, without_cpu = (statistics.median(p[k] for p in got) for k in (2, 3))
        print(f"digests cost: {what} crpy CPU (user+sys) median {with_cpu * 1e3:.0f} ms with, "
              f"{without_cpu * 1e3:.0f} ms without ({(with_cpu - without_cpu) * 1e3:+.0f} ms per "
              f"{args.mib} MiB)")
    with_cpu, without_cpu = (statistics.median(p[k] for r in rows for p in r[7]) for k in (4, 5))
    print(f"digests cost: dump, the target's CPU median {with_cpu * 1e3:.0f} ms with, {without_cpu * 1e3:.0f} ms "
          f"without ({(with_cpu - without_cpu) * 1e3:+.0f} ms per {args.mib} MiB: the parasite hashes the pages "
          f"it sends; --leave-running pairs)")
    with_cpu, without_cpu = (statistics.median(c for r in rows for c in r[k]) for k in (5, 6))
    print(f"digests cost: restore, the restored task's CPU median {with_cpu * 1e3:.0f} ms with, "
          f"{without_cpu * 1e3:.0f} ms without ({(with_cpu - without_cpu) * 1e3:+.0f} ms per {args.mib} MiB: "
          f"it checks the pages it reads)")
    for mib, got in ((args.mib, peaks), (args.rss_mib, big_peaks)):
        if got:
            print(f"crpy peak RSS, {mib} MiB task: dump {max(p[0] for p in got):.0f} MiB, restore "
                  f"{max(p[1] for p in got):.0f} MiB (largest of {len(got)}, digests or not; "
                  f"target < 64 MiB)")
    for name in EXTRA_BENCHES if not args.only_memory else ():
        module = importlib.import_module(f"bench.{name}")
        for line in module.run(args.reps):
            print(line)


if __name__ == "__main__":
    main()
