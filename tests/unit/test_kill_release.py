"""crpy.dump.tree._release_memory: the memory of a killed task is freed from the dumper
(process_mrelease) and the task still ends as killed; on a task that is not dying it does
nothing (the kernel refuses, the task runs on)."""

import os
import signal
import subprocess
import sys
import time

from crpy.dump import tree

HOLDER = "import sys; b = bytearray(64 << 20); print(flush=True); sys.stdin.read()"


def _holder():
    p = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdout.readline()                          # its 64 MiB are touched
    return p


def test_killed_task_memory_released_and_task_killed():
    p = _holder()
    os.kill(p.pid, signal.SIGKILL)
    tree._release_memory(p.pid)
    assert p.wait(timeout=10) == -signal.SIGKILL


def test_live_task_left_running():
    p = _holder()
    try:
        tree._release_memory(p.pid)
        time.sleep(0.05)
        assert p.poll() is None
        with open(f"/proc/{p.pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        assert rss > 60 << 10                    # KiB: its memory is still there
    finally:
        p.kill()
        p.wait()


def test_gone_task_is_no_error():
    p = _holder()
    p.kill()
    p.wait()
    tree._release_memory(p.pid)
