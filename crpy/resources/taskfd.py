"""crpy's own fd on an open file of a stopped task (pidfd_getfd, Linux 5.6): for kinds whose
state only a syscall on the file itself tells (timerfd_gettime, FIONREAD on a notification
group)."""

import contextlib
import os


def duplicate(pid, fd):
    """crpy's new fd on task pid's fd (same open file description); the caller closes it."""
    from crpy.kernel.syscalls import NR, sys_call

    pidfd = sys_call(NR.pidfd_open, pid, 0, what="pidfd_open", pid=pid)
    try:
        return sys_call(NR.pidfd_getfd, pidfd, fd, 0, what=f"pidfd_getfd of fd {fd}", pid=pid)
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def grabbed(pid, fd):
    """A duplicate of task pid's fd (same open file description), closed on the way out."""
    mine = duplicate(pid, fd)
    try:
        yield mine
    finally:
        os.close(mine)


def queued_bytes(pid, fd):
    """How many bytes of events task pid's fd has queued for reading (FIONREAD)."""
    import array
    import fcntl

    FIONREAD = 0x541B
    with grabbed(pid, fd) as mine:
        n = array.array("i", [0])
        fcntl.ioctl(mine, FIONREAD, n)
    return n[0]
