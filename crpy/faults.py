"""Test-only fault points of the dump and the restore (CONTRACTS.md), like criu's --fault N.

CRPY_FAULT=NAME makes the step named NAME fail, the first time it is reached, with the error of its
command (DumpError or RestoreError): the normal error path must then leave everything as it was.
    NAME@PID     fails only in the task (dump: the task being dumped) with that pid
    NAME:pause   says "crpy-fault: paused at NAME" on stderr and sleeps PAUSE_S seconds first, so
                 a test can SIGKILL or SIGINT crpy right there (then it fails as above)
    pause-in-pages  (no failure) after the first chunk of pages, "crpy-fault: paused in pages", and
                 a 60 s sleep: crpy SIGKILLed in the middle of the page dump
    restorer:STEP  the restorer blob fails at STEP (crpy.restore.blob), after the go;
                 restorer:STEP:kill: it dies there by SIGKILL instead, without a word
    pre-dump-copy  (pre-dump only) the tree resumed, its pages not copied yet (PRE_DUMP_POINTS)

DUMP_POINTS, RESTORE_POINTS and RESTORER_POINTS list every point in the order the steps run (the
parenthesis says which pid @PID matches); all_points() has them all: tests iterate over them.
"""

import os
import sys
import time

DUMP_POINTS = (
    "after-seize",           # the whole tree seized (stopped, ptrace-attached)
    "after-collect",         # (per task) /proc facts, VMA plans and the page scan taken
    "after-infect",          # (per task) the parasite runs in the task
    "after-pages",           # (per task) its pages written
    "after-fds",             # (per task) its fds and fs dumped
    "before-cure",           # (per task) sigactions and misc read, the parasite still in
    "mid-cure",              # (per task) its channel closed, the parasite still mapped (tasks cured side by side)
    "after-cure",            # (per task) the parasite gone, the task still seized
    "after-task-images",     # (per task) core, mm, fs, fdinfo and thread images written
    "after-tree-images",     # pstree, files and the rest of the tree's images written
    "after-images",          # the digests written: every image is there, before the kill
)

RESTORE_POINTS = (
    "restore-after-load",        # every image read and checked, nothing made yet
    "restore-after-ghosts",      # unlinked files made again (ghosts on disk), shared memory made
    "restore-after-preload",     # images preloaded and their digests checked: next is the fork
    "restore-after-fork",        # (per task, in the task) forked with its pid, dies with crpy
    "restore-after-premap",      # (per task) its memory premapped, its children not forked yet
    "restore-after-children",    # (per task) its children forked
    "restore-after-fds",         # (per task) fs and fds in place
    "restore-before-ready",      # (per task) at the restorer's door, before it says "ok"
    "restore-before-go",         # every task ready, in crpy: the last moment before the go
    "restore-after-go",          # the go given: a failure kills the tree; crpy killed leaves it whole
)

# the restorer blob's steps that have a fault point (parasite/restorer.c fault_point()); all run
# after the go, in every task but timers and aio (only in a task with POSIX timers, AIO contexts)
RESTORER_POINTS = tuple(f"restorer:{step}" for step in (
    "unmap", "vdso", "vmas", "aio", "mm-map", "sigactions", "threads", "timers", "sigreturn", "close-fds"))

# pre-dump only, after the steps it shares with the dump (not in all_points: a dump never reaches them)
PRE_DUMP_POINTS = (
    "pre-dump-copy",         # the tree detached and running again, its pages not copied yet
)

PAUSE_S = 60
_seen = set()


def active():
    return os.environ.get("CRPY_FAULT", "")


def all_points():
    """Every fault point: the dump's, the restore's, then the restorer blob's."""
    return DUMP_POINTS + RESTORE_POINTS + RESTORER_POINTS


def point(name, pid=None):
    """Called at each fault point; does nothing unless CRPY_FAULT names it (see the banner)."""
    fault = active()
    if not fault or not fault.startswith(name):
        return
    if name == "pause-in-pages":
        if fault == name:
            print("crpy-fault: paused in pages", file=sys.stderr, flush=True)
            time.sleep(PAUSE_S)
        return
    spec, _, mode = fault.partition(":")
    wanted, _, at_pid = spec.partition("@")
    if wanted != name or (at_pid and str(pid) != at_pid) or name in _seen:
        return
    _seen.add(name)
    if mode == "pause":
        os.write(2, f"crpy-fault: paused at {name}\n".encode())
        time.sleep(PAUSE_S)
    raise _error(name)(f"fault point {name}" + (f" in pid {pid}" if pid else ""),
                       "CRPY_FAULT is set: a test asked for this failure")


def _error(name):
    from crpy.errors import DumpError, RestoreError

    return RestoreError if name.startswith("restore-") else DumpError
