"""Benchmark: wall time of `crpy dump` and `crpy restore -d` of one small sleeping process (a C
program in pause(), about 100 KiB of pages), images on /dev/shm; target: each at most 100 ms.

Baselines measured in the same run, alternating with crpy: `python3 -c pass` (the interpreter's
own start-up) and `python3 -m crpy --version` (the interpreter plus crpy's command line).
The crpy commands run with bytecode caching on (into a temporary PYTHONPYCACHEPREFIX, warmed by
one round that is not counted), as an installed crpy runs: without .pyc files every run compiles
its modules again, which is not start-up but a setting of the environment.
run(reps) -> printed lines; `python3 -m bench.startup [reps]` runs it alone."""

import os
import statistics
import subprocess
import sys
import time

from bench import common

SLEEPER_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def _seconds(*argv):
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=common.ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _one_round(exe, workdir):
    """(python -c pass, crpy --version, dump, restore) seconds, one after the other."""
    python = _seconds(sys.executable, "-c", "pass")
    version = _seconds(sys.executable, "-m", "crpy", "--version")
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, ready], ready, "bench.startup: the sleeper")
    with common.killed_after([p.pid]), common.image_dir("crpy-bench-startup-") as imgs:
        dump, restore = common.dump_then_restore("bench.startup", p, imgs)
        if not os.path.exists(f"/proc/{p.pid}"):
            raise SystemExit("bench.startup: the restored sleeper is not running")
    return python, version, dump, restore


def run(reps=5):
    reps = max(reps, 5)
    with common.child_subreaper(), common.work_dir("crpy-bench-startup-") as workdir, \
            common.bytecode_cached(workdir):
        exe = common.build_c(workdir, "sleeper", SLEEPER_C, "-O1")
        _one_round(exe, workdir)                 # warm-up: writes the .pyc files
        rounds = [_one_round(exe, workdir) for _ in range(reps)]
    lines = [f"start-up: one small sleeping process, {reps} reps (median, min), whole command:"]
    for name, k, target in (("python", 0, "  python3 -c pass"), ("--version", 1, "  python3 -m crpy --version"),
                            ("dump", 2, "  target <= 100 ms"), ("restore", 3, "  target <= 100 ms")):
        lines.append(common.ms_line(name, [r[k] for r in rounds], 1) + target)
    base = statistics.median(r[0] for r in rounds)
    lines.append(f"  over python3 -c pass: dump {(statistics.median(r[2] for r in rounds) - base) * 1e3:.1f} ms, "
                 f"restore {(statistics.median(r[3] for r in rounds) - base) * 1e3:.1f} ms")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
