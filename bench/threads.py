"""Benchmark: dump and restore of one process with 64 threads (the main one and 63 in pause()),
images on /dev/shm; milliseconds per thread each way (whole command time / 64; aim: under
10 ms), next to the same commands for a single-threaded process.
run(reps) -> printed lines; `python3 -m bench.threads [reps]` runs it alone."""

import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def _build(workdir):
    src, exe = os.path.join(workdir, "threads.c"), os.path.join(workdir, "threads")
    with open(src, "w") as f:
        f.write(SLEEPER_C)
    subprocess.run(["gcc", "-O1", "-pthread", "-o", exe, src], check=True)
    return exe


def _start(exe, workdir, n):
    ready = os.path.join(workdir, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    p = subprocess.Popen([exe, str(n), ready], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (os.path.exists(ready) and open(ready).read().endswith("\n")):
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("bench.threads: the process did not start")
        time.sleep(0.01)
    return p


def _nr_threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def _crpy(*args):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crpy", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench.threads: crpy {args[0]} failed: {r.stderr.strip()}")
    return time.perf_counter() - t


def _gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.005)


def _one_round(exe, workdir, n):
    p = _start(exe, workdir, n)
    imgs = tempfile.mkdtemp(prefix="crpy-bench-threads-", dir="/dev/shm")
    try:
        dump = _crpy("dump", "-t", str(p.pid), "-D", imgs)
        p.wait()
        _gone(p.pid)
        restore = _crpy("restore", "-d", "-D", imgs)
        if _nr_threads(p.pid) != n:
            raise SystemExit(f"bench.threads: {_nr_threads(p.pid)} threads restored, not {n}")
        return dump, restore
    finally:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _gone(p.pid)
        shutil.rmtree(imgs, ignore_errors=True)


def run(reps=3):
    libc = ctypes.CDLL(None)
    libc.prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER: the restored process is ours to reap
    workdir = tempfile.mkdtemp(prefix="crpy-bench-threads-")
    try:
        exe = _build(workdir)
        many = [_one_round(exe, workdir, THREADS) for _ in range(reps)]
        one = [_one_round(exe, workdir, 1) for _ in range(reps)]
    finally:
        libc.prctl(36, 0, 0, 0, 0)
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"one process with {THREADS} threads, {reps} reps (median, min), ms per thread:"]
    for name, k in (("dump", 0), ("restore", 1)):
        per = [r[k] / THREADS for r in many]
        lines.append(f"  {name:8s} {statistics.median(per) * 1e3:7.2f} ms  (min {min(per) * 1e3:.2f} ms; "
                     f"whole command {statistics.median(r[k] for r in many):.3f} s, single-threaded "
                     f"process {statistics.median(r[k] for r in one):.3f} s)  target < 10 ms")
    return lines


if __name__ == "__main__":
    for line in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(line)
