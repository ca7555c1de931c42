"""Last step: kill the dumped task (SIGKILL while still seized, then collect its exit as its
tracer so nothing is left half-traced), or leave it running (the seize context detaches it)."""

import os
import signal
import time

from crpy.log import log


def kill_task(task):
    pid = task.pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass                              # died on its own meanwhile: nothing to kill
    task.killed = True
    try:
        while True:        # as tracer we see the exit (the real parent reaps it)
            _, status = os.waitpid(pid, 0x40000000)   # __WALL
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                break
    except ChildProcessError:
        pass
    _wait_gone(pid)
    log.info("Task %d killed", pid)


def wait_gone_all(pids, timeout=3.0):
    """_wait_gone for many tasks at once (a killed tree's orphans are reaped by init)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        _wait_gone(pid, max(deadline - time.monotonic(), 0.0))


def _wait_gone(pid, timeout=3.0):
    """Give the real parent a moment to reap it, so a restore right after finds the pid free.
    An orphan waits for init (here about 1.7 s); a zombie whose parent is another process is
    that parent's business."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return
        if fields[0] == b"Z" and int(fields[1]) != 1:
            log.info("Task %d is a zombie until its parent %s reaps it", pid, fields[1].decode())
            return
        time.sleep(0.005)
    log.warning("Task %d is killed but not yet reaped", pid)
