"""Benchmark: dump and restore of a tree of 128 sleeping processes (a root and 127 children,
each a small C program in pause()), images on /dev/shm; milliseconds per process each way
(whole command / 128; targets of issue 12: 5 ms to dump, 2.5 ms to restore).  Measured in the
same run, alternating with the tree's rounds: the same commands for a single process (crpy's
fixed cost), and the kernel's own price of a tree, fork+exit+wait of 128 processes (criu 4.2,
the issue's yardstick, does not run on this kernel).  Medians (and minima) of `reps` rounds.
Also what the restore cost each restored child (page faults, CPU time; they only sleep after it):
steadier than the wall time on a machine other work shares.
run(reps) -> printed lines; `python3 -m bench.tree [reps]` runs it alone."""

import os
import statistics
import subprocess
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
FORK_EXIT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int n = atoi(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        if (fork() == 0)
            _exit(0);
    while (wait(NULL) > 0)
        ;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + b.tv_nsec - a.tv_nsec);
    return 0;
}
"""


def _start(exe, workdir, tasks=TASKS):
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, str(tasks), ready], ready, "bench.tree: the tree")
    while len(_children(p.pid)) < tasks - 1:
        time.sleep(0.01)
    return p


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _one_round(exe, workdir, tasks=TASKS):
    """(dump s, restore s, restored child's page faults, its CPU ms, the root's page faults, its CPU
    ms): the children's are medians."""
    p = _start(exe, workdir, tasks)
    pids = [p.pid] + _children(p.pid)
    with common.killed_after(pids), common.image_dir("crpy-bench-tree-") as imgs:
        dump, restore = common.dump_then_restore("bench.tree", p, imgs, pids)
        if len(_children(p.pid)) != tasks - 1:
            raise SystemExit("bench.tree: the restored tree is incomplete")
        faults, cpu = _restore_cost(pids[1:]) if tasks > 1 else (0, 0)
        root_faults, root_cpu = _restore_cost(pids[:1])
        return dump, restore, faults, cpu, root_faults, root_cpu


def _restore_cost(pids):
    """Median page faults and CPU ms of restored tasks that have only slept since: what their
    restore cost them (less noisy than wall time on a shared machine)."""
    faults, cpu = [], []
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            faults.append(int(f.read().rsplit(")", 1)[1].split()[7]))     # minflt
        with open(f"/proc/{pid}/schedstat") as f:
            cpu.append(int(f.read().split()[0]) / 1e6)                     # ns on a CPU
    return statistics.median(faults), statistics.median(cpu)


def _fork_exit_seconds(exe):
    """fork+exit+wait of TASKS processes, timed inside the C program."""
    out = subprocess.run([exe, str(TASKS)], check=True, capture_output=True, text=True).stdout
    return int(out) / 1e9


TARGETS_MS = {"dump": 5.0, "restore": 2.5}


def run(reps=3):
    trees, singles, forks = [], [], []
    with common.child_subreaper(), common.work_dir("crpy-bench-tree-") as workdir:
        exe = common.build_c(workdir, "sleepers", SLEEPER_C, "-O1")
        forker = common.build_c(workdir, "fork_exit", FORK_EXIT_C, "-O1")
        for _ in range(reps):
            forks.append(_fork_exit_seconds(forker))
            trees.append(_one_round(exe, workdir))
            singles.append(_one_round(exe, workdir, 1))
    fork_ms = statistics.median(forks) * 1e3
    lines = [f"tree of {TASKS} sleeping processes, {reps} reps (median, min), ms per process "
             f"(whole command / {TASKS}):"]
    for name, k in (("dump", 0), ("restore", 1)):
        whole = (f"; whole {statistics.median(r[k] for r in trees):.3f} s, one process "
                 f"{statistics.median(r[k] for r in singles):.3f} s")
        lines.append(common.ms_line(name, [r[k] / TASKS for r in trees], more=whole) +
                     f"  target < {TARGETS_MS[name]} ms")
    lines.append(f"  each restored child: {statistics.median(r[2] for r in trees):.0f} page faults, "
                 f"{statistics.median(r[3] for r in trees):.2f} ms of CPU (medians)")
    lines.append(f"  the restored root (the Python parent that forked them): "
                 f"{statistics.median(r[4] for r in trees):.0f} page faults, "
                 f"{statistics.median(r[5] for r in trees):.0f} ms of CPU (medians)")
    lines.append(f"  baseline: fork+exit+wait of {TASKS} processes {fork_ms:.1f} ms "
                 f"({fork_ms / TASKS:.3f} ms per process)")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
