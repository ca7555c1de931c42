"""Benchmark: dump and restore of a tree of 128 sleeping processes (a root and 127 children,
each a small C program in pause()), images on /dev/shm; seconds per process each way (aim:
under 10 ms).  run(reps) -> printed lines; `python3 -m bench.tree [reps]` runs it alone."""

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
TASKS = 128
SLEEPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int n = atoi(argv[1]);
    for (int i = 1; i < n; i++)
        if (fork() == 0)
            for (;;) pause();
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def _build(workdir):
    src, exe = os.path.join(workdir, "sleepers.c"), os.path.join(workdir, "sleepers")
    with open(src, "w") as f:
        f.write(SLEEPER_C)
    subprocess.run(["gcc", "-O1", "-o", exe, src], check=True)
    return exe


def _start(exe, workdir):
    ready = os.path.join(workdir, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    p = subprocess.Popen([exe, str(TASKS), ready], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (os.path.exists(ready) and open(ready).read().endswith("\n")):
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("bench.tree: the tree did not start")
        time.sleep(0.01)
    while len(_children(p.pid)) < TASKS - 1:
        time.sleep(0.01)
    return p


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _crpy(*args):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crpy", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench.tree: crpy {args[0]} failed: {r.stderr.strip()}")
    return time.perf_counter() - t


def _reap_until_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.005)


def _one_round(exe, workdir):
    p = _start(exe, workdir)
    pids = [p.pid] + _children(p.pid)
    imgs = tempfile.mkdtemp(prefix="crpy-bench-tree-", dir="/dev/shm")
    try:
        dump = _crpy("dump", "-t", str(p.pid), "-D", imgs)
        p.wait()
        _reap_until_gone(pids)
        restore = _crpy("restore", "-d", "-D", imgs)
        if len(_children(p.pid)) != TASKS - 1:
            raise SystemExit("bench.tree: the restored tree is incomplete")
        return dump, restore
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_until_gone(pids)
        shutil.rmtree(imgs, ignore_errors=True)


def run(reps=3):
    libc = ctypes.CDLL(None)
    libc.prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER: the restored tree is ours to reap
    workdir = tempfile.mkdtemp(prefix="crpy-bench-tree-")
    try:
        exe = _build(workdir)
        rounds = [_one_round(exe, workdir) for _ in range(reps)]
    finally:
        libc.prctl(36, 0, 0, 0, 0)
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"tree of {TASKS} sleeping processes, {reps} reps (median, min), seconds per process:"]
    for name, k in (("dump", 0), ("restore", 1)):
        per = [r[k] / TASKS for r in rounds]
        lines.append(f"  {name:8s} {statistics.median(per) * 1e3:7.2f} ms  (min {min(per) * 1e3:.2f} ms)"
                     f"  target < 10 ms")
    return lines


if __name__ == "__main__":
    for line in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(line)
