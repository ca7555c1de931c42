"""Fork this Python process with a chosen PID: clone3 with set_tid, done the way os.fork does it.

A raw clone3 skips CPython's own fork bookkeeping, so it is wrapped in PyOS_BeforeFork /
PyOS_AfterFork_Child / PyOS_AfterFork_Parent (the import lock, the thread states, the GIL).  The
syscall goes through ctypes.PyDLL, which keeps the GIL held: with the GIL released (cffi, or
ctypes.CDLL) another Python thread may take it while clone3 runs, and the child then blocks
forever waiting for a GIL whose owner does not exist in it (restore-recipe.md, facts 4-5, 13).
"""

import ctypes
import errno
import signal

from crpy.errors import RestoreError

_NR_CLONE3 = 435
# struct clone_args, u64 each: flags pidfd child_tid parent_tid exit_signal stack stack_size
# tls set_tid set_tid_size cgroup (88 bytes).
_EXIT_SIGNAL, _SET_TID, _SET_TID_SIZE = 4, 8, 9
_ARGS_WORDS = 11

_libc = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.PyDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


CLONE_PARENT = 0x8000


def fork_with_pid(pid, flags=0):
    """Fork with PID `pid`; returns 0 in the child and `pid` in the parent.  flags: clone
    flags (CLONE_PARENT: the child is a sibling of the caller, as a session helper needs).

    RestoreError when the PID is taken (EEXIST) or clone3 fails otherwise."""
    args = (ctypes.c_uint64 * _ARGS_WORDS)()
    args[0] = flags
    tid = (ctypes.c_int * 1)(pid)
    # with CLONE_PARENT the kernel wants 0: the child signals like the caller does
    args[_EXIT_SIGNAL] = 0 if flags & CLONE_PARENT else signal.SIGCHLD
    args[_SET_TID] = ctypes.addressof(tid)
    args[_SET_TID_SIZE] = 1
    syscall = _syscall()
    api = ctypes.pythonapi

    api.PyOS_BeforeFork()
    ret = syscall(ctypes.c_long(_NR_CLONE3), ctypes.byref(args), ctypes.c_long(ctypes.sizeof(args)))
    if ret == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if ret > 0:
        return ret
    if err == errno.EEXIST:
        raise RestoreError(f"pid {pid} is taken by another task",
                           f"stop the task holding pid {pid} (or its group/session) and retry")
    raise RestoreError(f"clone3 with pid {pid}: {errno.errorcode.get(err, err)} ({_strerror(err)})",
                       "restore needs root (CAP_CHECKPOINT_RESTORE) in the task's pid namespace")


def _strerror(err):
    import os

    return os.strerror(err)
