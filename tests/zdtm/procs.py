"""Processes as the zdtm harness sees them: subreaper duty, reaping, killing, /proc state.

The harness is a child subreaper, so the daemonized tests and the tasks that `crpy restore -d`
leaves behind are its children: it reaps them (and learns how they ended) and kills whatever is
left over after a run.
"""

import ctypes
import os
import signal
import time

PR_SET_CHILD_SUBREAPER = 36


class HarnessError(Exception):
    """A step of a zdtm run failed; the message says which and why."""


def set_subreaper(on=True):
    """Become (or stop being) the reaper of orphaned descendants."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_state(pid):
    """The State letter of /proc/PID/stat, or None if there is no such task."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def reap(pid, timeout):
    """Wait until pid is gone; returns its wait status if it was our child, or None if not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return status
        except ChildProcessError:
            if proc_state(pid) in (None, "Z", "X"):
                return None
        if time.monotonic() > deadline:
            raise HarnessError(f"pid {pid} still alive after {timeout} s (state {proc_state(pid)})")
        time.sleep(0.01)


def describe_status(status):
    if status is None:
        return "gone (not our child)"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.WEXITSTATUS(status)}"


def kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        reap(pid, 10)
    except HarnessError:
        pass


def kill_alive(pids):
    """Kill and reap those of pids that still run (what a test restored, at its end)."""
    for pid in pids:
        if proc_state(pid) not in (None, "Z", "X"):
            kill_and_reap(pid)


def reap_strays():
    """Reap every finished child (subreaper duty)."""
    while True:
        try:
            got, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if got == 0:
            return


def children_of(ppid):
    """Pids of the live children of ppid, with their names."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        if int(fields[1]) == ppid and fields[0] not in ("Z", "X"):
            out[int(entry)] = head.split("(", 1)[1]
    return out


LEFTOVER_GRACE_S = 1.0


def kill_leftovers():
    """Kill and reap whatever child is still alive (a subreaper inherits what crpy leaves);
    returns {pid: name} of what was found.  A child still dying gets LEFTOVER_GRACE_S to end
    first: epoll_outside SIGKILLs its holder (a grandchild, ours once its parent exited) as its
    last act, and the holder could be seen alive a moment after the test itself was gone."""
    from tests.zdtm.procstate import poll_differences

    def alive():
        reap_strays()
        return children_of(os.getpid())
    left = poll_differences(alive, LEFTOVER_GRACE_S)
    for pid in left:
        kill_and_reap(pid)
    return left
