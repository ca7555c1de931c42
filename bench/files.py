"""Benchmark: dump and restore of a process holding 1000 open fds (500 regular files, 250 pipes
with 100 bytes in flight each, both ends open), images on /dev/shm.  Prints milliseconds per fd
each way: the time over that of the same program holding no extra fds, divided by 1000.
run(reps) -> printed lines; `python3 -m bench.files [reps]` runs it alone."""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FDS = 1000
HOLDER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int nfiles = atoi(argv[1]), npipes = atoi(argv[2]);
    char path[4096], data[100];
    memset(data, 'p', sizeof(data));
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof(path), "%s/f%d", argv[3], i);
        int fd = open(path, O_RDWR | O_CREAT, 0600);
        if (fd < 0 || write(fd, path, strlen(path)) < 0) return 2;
    }
    for (int i = 0; i < npipes; i++) {
        int p[2];
        if (pipe(p) || write(p[1], data, sizeof(data)) != sizeof(data)) return 2;
    }
    FILE *f = fopen(argv[4], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def _build(workdir):
    src, exe = os.path.join(workdir, "holder.c"), os.path.join(workdir, "holder")
    with open(src, "w") as f:
        f.write(HOLDER_C)
    subprocess.run(["gcc", "-O1", "-o", exe, src], check=True)
    return exe


def _start(exe, workdir, nfiles, npipes):
    ready = os.path.join(workdir, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    p = subprocess.Popen([exe, str(nfiles), str(npipes), workdir, ready], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (os.path.exists(ready) and open(ready).read().endswith("\n")):
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("bench.files: the fd holder did not start")
        time.sleep(0.01)
    return p


def _crpy(*args):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crpy", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench.files: crpy {args[0]} failed: {r.stderr.strip()}")
    return time.perf_counter() - t


def _gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.005)


def _one_round(exe, workdir, nfiles, npipes):
    """(dump seconds, restore seconds) of the holder with nfiles files and npipes pipes."""
    p = _start(exe, workdir, nfiles, npipes)
    imgs = tempfile.mkdtemp(prefix="crpy-bench-files-", dir="/dev/shm")
    try:
        dump = _crpy("dump", "-t", str(p.pid), "-D", imgs)
        p.wait()
        restore = _crpy("restore", "-d", "-D", imgs)
        want = nfiles + 2 * npipes
        got = len(os.listdir(f"/proc/{p.pid}/fd"))
        if got < want:
            raise SystemExit(f"bench.files: restored {got} fds, want at least {want}")
        return dump, restore
    finally:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _gone(p.pid)
        shutil.rmtree(imgs, ignore_errors=True)


def run(reps=3):
    workdir = tempfile.mkdtemp(prefix="crpy-bench-files-")
    try:
        exe = _build(workdir)
        base = [_one_round(exe, workdir, 0, 0) for _ in range(reps)]
        full = [_one_round(exe, workdir, FDS // 2, FDS // 4) for _ in range(reps)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    lines = [f"process with {FDS} open fds ({FDS // 2} files, {FDS // 4} pipes with 100 bytes in flight),"
             f" {reps} reps, milliseconds per fd over the same process without them (median, min):"]
    for name, k in (("dump", 0), ("restore", 1)):
        b = statistics.median(r[k] for r in base)
        per = [(r[k] - b) / FDS for r in full]
        lines.append(f"  {name:8s} {statistics.median(per) * 1e3:7.3f} ms  (min {min(per) * 1e3:.3f} ms;"
                     f" whole {statistics.median(r[k] for r in full):.2f} s, without the fds {b:.2f} s)")
    return lines


if __name__ == "__main__":
    print("\n".join(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3)))
