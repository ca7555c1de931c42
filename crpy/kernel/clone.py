"""Fork this Python process with a chosen PID: clone3 with set_tid, done the way os.fork does it.

A raw clone3 skips CPython's own fork bookkeeping, so it is wrapped in PyOS_BeforeFork /
PyOS_AfterFork_Child / PyOS_AfterFork_Parent (the import lock, the thread states, the GIL).  All of
it runs in one C call holding the GIL (crpy/kernel/cdef/45_fork.c): the child must not run any
bytecode before PyOS_AfterFork_Child, or a GIL drop request from one of the parent's threads can
leave it waiting forever for a thread it does not have (restore-recipe.md, facts 4-5, 13).
fork_many forks a task's children in one C call (crpy/kernel/cdef/46_fork_many.c), without those
hooks while the interpreter has one thread (its banner says why the child is safe then).
Neither takes glibc's malloc locks as its fork() does: a thread of crpy's that ends before a fork
is joined with join_before_fork, which also waits for its exit from glibc.
"""

import errno
import signal

from crpy.errors import RestoreError

CLONE_FILES = 0x400
CLONE_PARENT = 0x8000


def fork_with_pid(pid, flags=0):
    """Fork with PID `pid`; returns 0 in the child and `pid` in the parent.  flags: clone
    flags (CLONE_PARENT: the child is a sibling of the caller, as a session helper needs;
    CLONE_FILES: the child shares the caller's fd table).

    RestoreError when the PID is taken (EEXIST) or clone3 fails otherwise."""
    from crpy.kernel._sys import ffi, lib

    err = ffi.new("int *")
    # with CLONE_PARENT the kernel wants 0: the child signals like the caller does
    exit_signal = 0 if flags & CLONE_PARENT else signal.SIGCHLD
    ret = lib.crpy_fork_with_pid(pid, flags, exit_signal, err)
    if ret >= 0:
        return ret
    raise _clone_error(pid, err[0])


def fork_many(pids, programs=None):
    """Fork one child per PID in `pids` in one C call (crpy/kernel/cdef/46_fork_many.c); each
    child starts with every signal blocked and SIGKILL as its parent-death signal.  Returns the
    child's index in `pids` in the child, None in the parent.  programs: per PID, None or the
    (program, strings) cdata of its whole restore (crpy.restore.leaf), which the child runs in C
    instead of returning (it returns only if the program falls back to Python).

    RestoreError as fork_with_pid; the children forked before the failing one run on."""
    from crpy.kernel._sys import ffi, lib

    if not pids:
        return None
    err, index = ffi.new("int *"), ffi.new("int *")
    progs = strs = ffi.NULL
    if programs and any(programs):
        progs = ffi.new("int64_t *[]", [p[0] if p else ffi.NULL for p in programs])
        strs = ffi.new("char *[]", [p[1] if p else ffi.NULL for p in programs])
    ret = lib.crpy_fork_many(ffi.new("int[]", list(pids)), len(pids), 0, signal.SIGCHLD,
                             signal.SIGKILL, err, index, progs, strs)
    if ret == 0:
        return index[0]
    if ret > 0:
        return None
    raise _clone_error(pids[index[0]], err[0])


THREAD_EXIT_S = 1.0


def join_before_fork(thread):
    """Join a thread of crpy's that ends before a fork, and return only once it has left the
    kernel (/proc/self/task/TID gone).  join() returns while the thread still runs glibc's exit,
    which gives its malloc cache back to the arenas under their locks; the forks here are bare
    clone3 calls, without the malloc locks glibc's fork takes, so a child forked right then
    inherits an arena locked for good and hangs in its first malloc (a tree's restore, forked
    just after the integrity check's thread ended, stalled in about one run in 20)."""
    import os
    import time

    thread.join()
    deadline = time.monotonic() + THREAD_EXIT_S
    while os.path.exists(f"/proc/self/task/{thread.native_id}") and time.monotonic() < deadline:
        time.sleep(0.0001)


def _clone_error(pid, err):
    if err == errno.EEXIST:
        return RestoreError(f"pid {pid} is taken by another task",
                            f"stop the task holding pid {pid} (or its group/session) and retry")
    return RestoreError(f"clone3 with pid {pid}: {errno.errorcode.get(err, err)} ({_strerror(err)})",
                        "restore needs root (CAP_CHECKPOINT_RESTORE) in the task's pid namespace")


def _strerror(err):
    import os

    return os.strerror(err)
