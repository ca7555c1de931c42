"""Benchmark: dump and restore of a tree of 128 sleeping processes (a root and 127 children,
each a small C program in pause()), images on /dev/shm; seconds per process each way (aim:
under 10 ms).  run(reps) -> printed lines; `python3 -m bench.tree [reps]` runs it alone."""

import os
import time

from bench import common

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


def _start(exe, workdir):
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, str(TASKS), ready], ready, "bench.tree: the tree")
    while len(_children(p.pid)) < TASKS - 1:
        time.sleep(0.01)
    return p


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _one_round(exe, workdir):
    p = _start(exe, workdir)
    pids = [p.pid] + _children(p.pid)
    with common.killed_after(pids), common.image_dir("crpy-bench-tree-") as imgs:
        dump, restore = common.dump_then_restore("bench.tree", p, imgs, pids)
        if len(_children(p.pid)) != TASKS - 1:
            raise SystemExit("bench.tree: the restored tree is incomplete")
        return dump, restore


def run(reps=3):
    with common.child_subreaper(), common.work_dir("crpy-bench-tree-") as workdir:
        exe = common.build_c(workdir, "sleepers", SLEEPER_C, "-O1")
        rounds = [_one_round(exe, workdir) for _ in range(reps)]
    lines = [f"tree of {TASKS} sleeping processes, {reps} reps (median, min), seconds per process:"]
    for name, k in (("dump", 0), ("restore", 1)):
        lines.append(common.ms_line(name, [r[k] / TASKS for r in rounds]) + "  target < 10 ms")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
