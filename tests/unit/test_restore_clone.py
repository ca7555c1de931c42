"""crpy.kernel.clone.fork_many: children with chosen PIDs from one C call, each starting with
every signal blocked and SIGKILL as its parent-death signal (needs root for clone3's set_tid)."""

import os
import signal

import pytest

from crpy.errors import RestoreError
from crpy.kernel.clone import fork_many

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="clone3 with set_tid needs root")


def _free_pids(n):
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read()) - 1
    free = [p for p in range(top - 5000, top) if not os.path.exists(f"/proc/{p}")]
    return free[-n:]


def _child_says(index):
    """In the child: exit code 10 + index when its state is the promised one, else 1."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    ok = signal.SIGTERM in blocked and signal.SIGUSR1 in blocked
    os._exit(10 + index if ok else 1)


def test_children_get_their_pids_and_indexes():
    pids = _free_pids(3)
    index = fork_many(pids)
    if index is not None:
        _child_says(index)
    for i, pid in enumerate(pids):
        got, status = os.waitpid(pid, 0)
        assert got == pid and os.WEXITSTATUS(status) == 10 + i


def test_taken_pid_is_one_line_error_and_the_ones_before_run():
    first = _free_pids(1)[0]
    with pytest.raises(RestoreError, match=f"pid {os.getpid()} is taken"):
        if fork_many([first, os.getpid()]) is not None:
            os._exit(0)
    assert os.waitpid(first, 0)[0] == first


def test_nothing_to_fork():
    assert fork_many([]) is None
