"""Benchmark: lazy restore (post-copy).  The time from the start of `crpy restore -d` to its
return (the task running) with --lazy-pages, against a normal restore of the same images, for a
process holding 256 MiB and 1 GiB of touched random data (images on /dev/shm).  The lazy figure
should not grow with memory; the daemon's time until every page is in is printed beside it.
Both with the images' digests checked and with --skip-integrity (the check reads every image,
pages included, before anything is forked).
run(reps) -> printed lines; `python3 -m bench.lazy [reps]` runs it alone."""

import os
import statistics
import subprocess
import sys
import time

from bench import common

SIZES_MIB = (256, 1024)


def _lazy_restore(images, extra):
    """(seconds to the task running, seconds until the daemon had every page in)."""
    sock = os.path.join(images, "lazy-pages.socket")
    daemon = subprocess.Popen([sys.executable, "-m", "crpy", "lazy-pages", "-D", images], cwd=common.ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench.lazy: crpy lazy-pages did not start")
            time.sleep(0.005)
        t0 = time.perf_counter()
        running = common.crpy_seconds("bench.lazy", "restore", "-d", "-D", images, "--lazy-pages", *extra)
        if daemon.wait(120) != 0:
            raise SystemExit("bench.lazy: crpy lazy-pages failed")
        return running, time.perf_counter() - t0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def _one_round(exe, workdir, mib, extra):
    """(normal restore s, lazy restore s, lazy all-in s) of one dump."""
    pidfile = os.path.join(workdir, "hold.pid")
    proc = common.start_target([exe, str(mib), pidfile], pidfile, "bench.lazy: the target", timeout=120,
                               new_session=False)
    with common.killed_after([proc.pid]), common.image_dir("crpy-bench-lazy-") as imgs:
        common.crpy_seconds("bench.lazy", "dump", "-t", str(proc.pid), "-D", imgs, *extra)
        proc.wait()
        common.wait_gone([proc.pid])
        normal = common.crpy_seconds("bench.lazy", "restore", "-d", "-D", imgs, *extra)
        with common.killed_after([proc.pid]):
            pass
        lazy, all_in = _lazy_restore(imgs, extra)
        return normal, lazy, all_in


def run(reps=3):
    lines = [f"lazy restore, {reps} reps (median, min): seconds from `crpy restore -d` to the task running"]
    with common.child_subreaper(), common.work_dir("crpy-bench-lazy-") as workdir:
        with open(os.path.join(common.ROOT, "bench", "hold.c")) as f:
            exe = common.build_c(workdir, "hold", f.read(), "-O2")
        for extra, label in (((), "digests checked"), (("--skip-integrity",), "--skip-integrity")):
            for mib in SIZES_MIB:
                rows = [_one_round(exe, workdir, mib, extra) for _ in range(reps)]
                normal, lazy, all_in = ([r[k] for r in rows] for k in range(3))
                lines.append(f"  {mib:5d} MiB, {label:16s} normal {statistics.median(normal):6.3f} s "
                             f"(min {min(normal):.3f})  lazy {statistics.median(lazy):6.3f} s "
                             f"(min {min(lazy):.3f}); every page in after {statistics.median(all_in):.2f} s")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
