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
import collections
import dataclasses
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


@dataclasses.dataclass
class Round:
    """What one_round measured.  digests: True for the run with digests (checked), False for the
    one with --skip-integrity."""
    baseline: float             # seconds of process_vm_readv of the target's data
    dumps: dict                 # {digests: Run} of the dump that kills the target (one of each)
    restores: list              # back-to-back pairs [{digests: Run}] of restores of the same images
    leave_running: list         # back-to-back pairs [{digests: Run}] of dumps with --leave-running


# One crpy run: seconds, crpy's CPU seconds, crpy's peak RSS in MiB, and the CPU seconds the
# target spent on it (the parasite's hashing, the restored task's check; None where unmeasured).
Run = collections.namedtuple("Run", "seconds cpu rss task_cpu")


def _run(*args):
    seconds, rss, cpu = common.crpy_run("bench", *args)
    return Run(seconds, cpu, rss, None)


def one_round(exe, mib, workdir, n, restores=3):
    """A Round: two targets, one dumped with digests and one with --skip-integrity (the order
    alternating with n), then `restores` back-to-back pairs of restores of the image set with
    digests, checked and with --skip-integrity (the order alternating), the restored task
    killed after each: a restore is short, so several pairs per round make the ratio less of a
    draw, and the same images on both sides leave the check as the only difference."""
    order = (True, False) if n % 2 == 0 else (False, True)
    extra = {True: (), False: ("--skip-integrity",)}
    dumps, pids = {}, {}
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
                dumps[digests] = _run("dump", "-t", str(proc.pid), "-D", dirs[digests], *extra[digests])
                proc.wait()
                common.wait_gone([proc.pid])
            pids[digests] = proc.pid
        pairs = []
        for k in range(restores):
            pair = {}
            for digests in (order if k % 2 == 0 else order[::-1]):
                pid = pids[True]                    # the image set with digests, either way
                with common.killed_after([pid]):
                    run = _run("restore", "-d", "-D", dirs[True], *extra[digests])
                    pair[digests] = run._replace(task_cpu=_task_cpu(pid))
            pairs.append(pair)
    return Round(base, dumps, pairs, more_dumps)


def _leave_running_pairs(pid, extra, order, pairs):
    """[{digests: Run}] of `pairs` back-to-back pairs of `crpy dump --leave-running` of the same
    target (the same page step as a dump that kills; several pairs a round for the digests' dump
    cost, as for the restore's), with the target's CPU (the parasite's work: it hashes the pages
    it sends)."""
    out = []
    for k in range(pairs):
        got = {}
        for digests in (order if k % 2 == 0 else order[::-1]):
            with common.image_dir("crpy-bench-") as scratch:
                before = _task_cpu(pid)
                run = _run("dump", "--leave-running", "-t", str(pid), "-D", scratch, *extra[digests])
                got[digests] = run._replace(task_cpu=_task_cpu(pid) - before)
        out.append(got)
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
    with common.child_subreaper(), common.work_dir("crpy-bench-") as workdir, common.bytecode_cached(workdir):
        with open(os.path.join(common.ROOT, "bench", "hold.c")) as f:
            exe = common.build_c(workdir, "hold", f.read(), "-O2")
        one_round(exe, 16, workdir, 0)          # warm-up: writes the .pyc files
        rows = [one_round(exe, args.mib, workdir, n) for n in range(args.reps)]
        big = [one_round(exe, args.rss_mib, workdir, 0)] if args.rss_mib else []
    gib = args.mib / 1024
    print(f"crpy bench: {args.mib} MiB of touched random data, images on /dev/shm, {args.reps} rounds")
    for line in notes:
        print(line)
    base = report("baseline process_vm_readv", [r.baseline for r in rows], gib)
    # per round one dump of each kind; per round `restores` restores of each
    dumps = {d: [r.dumps[d].seconds for r in rows] for d in (True, False)}
    restores = {d: [p[d].seconds for r in rows for p in r.restores] for d in (True, False)}
    dump = report("crpy dump", dumps[True], gib)
    restore = report("crpy restore", restores[True], gib)
    report("crpy dump, no digests", dumps[False], gib)
    report("crpy restore, no check", restores[False], gib)
    print(f"ratio dump/baseline {dump / base:.2f}x, restore/baseline {restore / base:.2f}x, "
          f"restore/dump {restore / dump:.2f}x")
    # the dump pairs: each round's two dumps that kill, and its --leave-running pairs
    leave_running = [p for r in rows for p in r.leave_running]
    pairs = {"dump": [r.dumps for r in rows] + leave_running,
             "restore": [p for r in rows for p in r.restores]}
    for what, got in pairs.items():
        ratios = sorted(p[True].seconds / p[False].seconds for p in got)
        print(f"digests cost: {what} with/without, median of {len(got)} pairs {statistics.median(ratios):.3f}x "
              f"(pairs {' '.join(f'{x:.3f}' for x in ratios)})")
        # crpy's own CPU (its threads too; not the restored task's): the hashing's real price,
        # which the wall ratios above show only on a quiet machine
        with_cpu, without_cpu = (statistics.median(p[d].cpu for p in got) for d in (True, False))
        print(f"digests cost: {what} crpy CPU (user+sys) median {with_cpu * 1e3:.0f} ms with, "
              f"{without_cpu * 1e3:.0f} ms without ({(with_cpu - without_cpu) * 1e3:+.0f} ms per "
              f"{args.mib} MiB)")
    with_cpu, without_cpu = (statistics.median(p[d].task_cpu for p in leave_running) for d in (True, False))
    print(f"digests cost: dump, the target's CPU median {with_cpu * 1e3:.0f} ms with, {without_cpu * 1e3:.0f} ms "
          f"without ({(with_cpu - without_cpu) * 1e3:+.0f} ms per {args.mib} MiB: the parasite hashes the pages "
          f"it sends; --leave-running pairs)")
    with_cpu, without_cpu = (statistics.median(p[d].task_cpu for p in pairs["restore"]) for d in (True, False))
    print(f"digests cost: restore, the restored task's CPU median {with_cpu * 1e3:.0f} ms with, "
          f"{without_cpu * 1e3:.0f} ms without ({(with_cpu - without_cpu) * 1e3:+.0f} ms per {args.mib} MiB: "
          f"it checks the pages it reads)")
    for mib, got in ((args.mib, rows), (args.rss_mib, big)):
        if got:
            dumps = [r.dumps[d].rss for r in got for d in r.dumps]
            restores = [p[d].rss for r in got for p in r.restores for d in p]
            print(f"crpy peak RSS, {mib} MiB task: dump {max(dumps):.0f} MiB (largest of {len(dumps)}), "
                  f"restore {max(restores):.0f} MiB (largest of {len(restores)}), digests or not; "
                  f"target < 64 MiB")
    for name in EXTRA_BENCHES if not args.only_memory else ():
        module = importlib.import_module(f"bench.{name}")
        for line in module.run(args.reps):
            print(line)


if __name__ == "__main__":
    main()
