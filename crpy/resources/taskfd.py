"""crpy's own fd on an open file of a stopped task (pidfd_getfd, Linux 5.6): for kinds whose
state only a syscall on the file itself tells (timerfd_gettime)."""

import contextlib
import os


@contextlib.contextmanager
def grabbed(pid, fd):
    """A duplicate of task pid's fd (same open file description), closed on the way out."""
    from crpy.kernel.syscalls import NR, sys_call

    pidfd = sys_call(NR.pidfd_open, pid, 0, what="pidfd_open", pid=pid)
    try:
        mine = sys_call(NR.pidfd_getfd, pidfd, fd, 0, what="pidfd_getfd", pid=pid)
    finally:
        os.close(pidfd)
    try:
        yield mine
    finally:
        os.close(mine)
