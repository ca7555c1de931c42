"""Soak (issue 13): back-to-back dump/restore cycles of a busy 3-process workload stay exact and flat.

The workload is tests/unit/soak_target.c: a producer writing numbered lines into a pipe on an
interval timer, a middle process checking and hashing them on through a unix socketpair, and a
consumer appending them to a file.  CRPY_SOAK_CYCLES cycles (default 10; `make soak` runs 100) of
`crpy dump` then `crpy restore -d`, each waiting for new lines before the next.  Then:

  output : the workload is stopped (SIGUSR1: pipe and socket drain and close, all exit 0) and its
           file of M lines equals, byte for byte, that of an uninterrupted run told to make M lines
           (the middle process exits non-zero on any lost, duplicated or damaged line too).
  flat   : per task of the workload, fds and mappings counted after each restore are the same in
           the last cycles as in the first, and VmRSS grows by at most RSS_TOLERANCE; the peak RSS
           of each crpy dump and restore command (/usr/bin/time's %M) likewise.  "First" and "last"
           are the first and last WINDOW cycles (10, or half the cycles when fewer than 20).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.crhelpers import ROOT, build_c, log_tail, read_text, start_target, wait_for
from tests.zdtm.procs import kill_and_reap, reap, reap_strays

CYCLES = int(os.environ.get("CRPY_SOAK_CYCLES", "10"))
WINDOW = min(10, max(1, CYCLES // 2))
INTERVAL_US = 2000                   # a line every 2 ms
NEW_LINES_PER_CYCLE = 20             # the restored workload must make this many before the next dump
RSS_TOLERANCE = (0.10, 512)          # growth allowed: 10 % of the first cycles' mean, plus 512 kB
TIME = "/usr/bin/time"                # GNU time: the peak RSS of each crpy command
SOURCE = Path(ROOT) / "tests" / "unit" / "soak_target.c"

pytestmark = pytest.mark.usefixtures("subreaper")


def _lines(path):
    return read_text(path).count("\n")


def _timed_crpy(rss_file, *args):
    """Run `python3 -m crpy ARGS` under /usr/bin/time; (returncode, stderr, peak RSS in kB).

    The peak comes from time's wait4 of its child (GNU time's %M).  Our own wait4 of crpy would
    not do: the child spawned from pytest carries pytest's high-water RSS across its exec."""
    p = subprocess.run([TIME, "-f", "%M", "-o", rss_file, sys.executable, "-m", "crpy", *map(str, args)],
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    return p.returncode, p.stderr, int(read_text(rss_file).split()[-1])


def _task_figures(pid):
    """(VmRSS kB, open fds, mappings) of one task."""
    rss = next(int(line.split()[1]) for line in read_text(f"/proc/{pid}/status").splitlines()
               if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd")), read_text(f"/proc/{pid}/maps").count("\n")


def _mean(values):
    return sum(values) / len(values)


def _check_flat(series, name, tolerance=None):
    """series: one number per cycle.  tolerance None: the last cycles' max must not exceed the
    first cycles' max; (fraction, kB): the last cycles' mean may exceed the first's by that much."""
    first, last = series[:WINDOW], series[-WINDOW:]
    if tolerance is None:
        assert max(last) <= max(first), f"{name} grew: first {first}, last {last}"
    else:
        limit = _mean(first) * (1 + tolerance[0]) + tolerance[1]
        assert _mean(last) <= limit, f"{name} grew beyond {limit:.0f} kB: first {first}, last {last}"


def test_soak_cycles_exact_and_flat(tmp_path):
    if not os.access(TIME, os.X_OK):
        pytest.skip(f"{TIME} (GNU time, to measure crpy's peak RSS) is not installed")
    binary = build_c(tmp_path, "soak_target", SOURCE)
    out = tmp_path / "out.txt"
    proc = start_target([binary, out, 0, INTERVAL_US], lambda: _lines(out) >= NEW_LINES_PER_CYCLE,
                        what="the soak workload's first lines")
    root = proc.pid
    pids = [root] + sorted(int(p) for p in read_text(f"/proc/{root}/task/{root}/children").split())
    assert len(pids) == 3, f"the workload should be 3 processes: {pids}"
    tasks = {pid: [] for pid in pids}         # per cycle: (rss, fds, maps)
    crpy_rss = {"dump": [], "restore": []}
    seconds = []
    try:
        for cycle in range(CYCLES):
            images = tmp_path / f"img{cycle}"
            start = time.monotonic()
            rc, err, rss = _timed_crpy(tmp_path / "rss", "dump", "-t", root, "-D", images, "-v4", "-o", "dump.log")
            assert rc == 0, f"cycle {cycle}: dump: {err}{log_tail(images / 'dump.log')}"
            crpy_rss["dump"].append(rss)
            for pid in pids:
                reap(pid, 10)                 # our child (the first time) or the subreaper's
            reap_strays()
            rc, err, rss = _timed_crpy(tmp_path / "rss", "restore", "-D", images, "-d", "-v4", "-o", "restore.log")
            assert rc == 0, f"cycle {cycle}: restore: {err}{log_tail(images / 'restore.log')}"
            crpy_rss["restore"].append(rss)
            had = _lines(out)
            wait_for(lambda: _lines(out) >= had + NEW_LINES_PER_CYCLE, 20,
                     f"cycle {cycle}: new lines from the restored workload")
            seconds.append(time.monotonic() - start)
            for pid in pids:
                tasks[pid].append(_task_figures(pid))
            if cycle > 0:
                shutil.rmtree(tmp_path / f"img{cycle - 1}")

        os.kill(root, signal.SIGUSR1)
        status = reap(root, 20)
        assert status is not None and os.waitstatus_to_exitcode(status) == 0, \
            f"the workload ended badly: status {status} (21: middle saw a lost/duplicated line)"
    finally:
        for pid in pids:
            kill_and_reap(pid)
        reap_strays()

    produced = out.read_bytes()
    lines = produced.count(b"\n")
    reference = tmp_path / "reference.txt"
    r = subprocess.run([binary, str(reference), str(lines), "50"], timeout=120)
    assert r.returncode == 0, f"the uninterrupted run ended with {r.returncode}"
    assert produced == reference.read_bytes(), f"the output of {lines} lines differs from an uninterrupted run's"

    _report(tasks, crpy_rss, seconds, lines)
    for pid, rows in tasks.items():
        _check_flat([r[0] for r in rows], f"pid {pid} VmRSS", RSS_TOLERANCE)
        _check_flat([r[1] for r in rows], f"pid {pid} fds")
        _check_flat([r[2] for r in rows], f"pid {pid} mappings")
    for command, series in crpy_rss.items():
        _check_flat(series, f"crpy {command} peak RSS", RSS_TOLERANCE)


def _report(tasks, crpy_rss, seconds, lines):
    def span(series, fmt=".0f"):
        return (f"first {_mean(series[:WINDOW]):{fmt}} last {_mean(series[-WINDOW:]):{fmt}} "
                f"(max {max(series):{fmt}})")

    print(f"\nsoak: {CYCLES} cycles, {lines} lines equal to an uninterrupted run; "
          f"means of the first and last {WINDOW} cycles:")
    for role, (pid, rows) in zip(("producer", "middle", "consumer"), tasks.items()):
        print(f"  {role:8} pid {pid}: VmRSS kB {span([r[0] for r in rows])}; "
              f"fds {span([r[1] for r in rows])}; maps {span([r[2] for r in rows])}")
    for command, series in crpy_rss.items():
        print(f"  crpy {command:7} peak RSS kB {span(series)}")
    print(f"  seconds per cycle (dump + restore + {NEW_LINES_PER_CYCLE} new lines): {span(seconds, '.2f')}")
