"""`make bench`: how fast crpy dumps and restores, against a baseline measured in the same run.

Target: a process holding 1 GiB of touched random data; images on /dev/shm.  Baseline:
process_vm_readv of the same memory into a reused 64 MiB buffer (the cheapest way to read it out).
Timings on these VMs swing 2-5x, so every figure is the median (and minimum) of several
alternating runs.  Run as root from the project root: python3 -m bench.run [--reps N] [--mib N]
"""

import argparse
import importlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# Further benchmarks, each a module of bench/ with run(reps) -> printed lines.
EXTRA_BENCHES = ["tree", "threads", "files"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_target(workdir):
    exe = os.path.join(workdir, "hold")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "bench", "hold.c")], check=True)
    return exe


def start_target(exe, mib, workdir):
    pidfile = os.path.join(workdir, "hold.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    proc = subprocess.Popen([exe, str(mib), pidfile], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (os.path.exists(pidfile) and open(pidfile).read().endswith("\n")):
        if time.time() > deadline or proc.poll() is not None:
            raise SystemExit("bench: the target did not start")
        time.sleep(0.01)
    return proc


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


def crpy_cmd(*args):
    return [sys.executable, "-m", "crpy", *args]


def timed(cmd):
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[2:])} failed: {res.stderr.strip()}")
    return dt


def one_round(exe, mib, workdir):
    imgs = tempfile.mkdtemp(prefix="crpy-bench-", dir="/dev/shm")
    proc = start_target(exe, mib, workdir)
    try:
        base = baseline_pvr(proc.pid, mib)
        dump = timed(crpy_cmd("dump", "-t", str(proc.pid), "-D", imgs))
        proc.wait()
        pidfile = os.path.join(workdir, "restored.pid")
        restore = timed(crpy_cmd("restore", "-D", imgs, "-d", "--pidfile", pidfile))
        pid = int(open(pidfile).read())
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
        return base, dump, restore
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(imgs, ignore_errors=True)


def _reap(pid):
    # The restored task was reparented to us (we are a child subreaper) or to init.
    for _ in range(200):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.01)


def report(name, times, gib):
    med, best = statistics.median(times), min(times)
    print(f"{name:<28} median {med:7.3f} s  {gib / med:6.2f} GiB/s   (best {best:.3f} s, {gib / best:.2f} GiB/s)")
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    import ctypes

    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: restored tasks come back to us
    workdir = tempfile.mkdtemp(prefix="crpy-bench-")
    exe = build_target(workdir)
    rows = [one_round(exe, args.mib, workdir) for _ in range(args.reps)]
    gib = args.mib / 1024
    print(f"crpy bench: {args.mib} MiB of touched random data, images on /dev/shm, {args.reps} rounds")
    base = report("baseline process_vm_readv", [r[0] for r in rows], gib)
    dump = report("crpy dump", [r[1] for r in rows], gib)
    restore = report("crpy restore", [r[2] for r in rows], gib)
    print(f"ratio dump/baseline {dump / base:.2f}x, restore/baseline {restore / base:.2f}x, "
          f"restore/dump {restore / dump:.2f}x")
    shutil.rmtree(workdir, ignore_errors=True)
    for name in EXTRA_BENCHES:
        module = importlib.import_module(f"bench.{name}")
        for line in module.run(args.reps):
            print(line)


if __name__ == "__main__":
    main()
