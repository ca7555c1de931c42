"""Unit tests of crpy.kernel.clone.fork_with_pid: the chosen PID, a taken PID, and a child that
works like an os.fork child even while another Python thread keeps the GIL busy."""

import os
import threading

import pytest

from crpy.errors import RestoreError
from crpy.kernel.clone import fork_with_pid


def free_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    for pid in range(top - 1, top // 2, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    pytest.fail("no free pid found")


def wait_exit(pid, timeout=10.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} hung (GIL or import lock held in the child?)")


def test_child_gets_the_chosen_pid():
    want = free_pid()
    r, w = os.pipe()
    pid = fork_with_pid(want)
    if pid == 0:
        os.close(r)
        os.write(w, str(os.getpid()).encode())
        os._exit(0)
    os.close(w)
    assert pid == want
    assert os.read(r, 32).decode() == str(want)
    os.close(r)
    assert wait_exit(pid) == 0


def test_taken_pid_is_a_restore_error():
    with pytest.raises(RestoreError, match=f"pid {os.getpid()} is taken"):
        fork_with_pid(os.getpid())


def test_child_is_sound_while_another_thread_runs():
    """The child imports, starts a thread and sees one thread only, 20 times in a row, while a
    second thread of the parent keeps taking the GIL (restore-recipe.md fact 5)."""
    stop = threading.Event()
    busy = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)], daemon=True)
    busy.start()
    try:
        for _ in range(20):
            pid = fork_with_pid(free_pid())
            if pid == 0:
                import json  # noqa: F401  (the import lock works)

                t = threading.Thread(target=lambda: None)
                t.start()
                t.join()
                os._exit(0 if threading.active_count() == 1 else 3)
            assert wait_exit(pid) == 0
        import email.utils  # noqa: F401  (and the parent's import lock was given back)
    finally:
        stop.set()
        busy.join()
