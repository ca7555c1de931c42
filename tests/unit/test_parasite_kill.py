"""A dumper SIGKILLed with the parasite inside must leave the task as it was.

The dumper is a separate Python process (DUMPER below) that seizes and infects the victim,
then either idles or dumps pages in a loop; the test kills it with SIGKILL.  The parasite sees
the hang-up, closes its fds, unmaps itself and rt_sigreturns through the emergency frame: the
victim must be untraced, with its maps, fds and signal state as before, and pass its own
register check.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from test_parasite_victim import Victim, build_victim, differences, snapshot, wait_untraced

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DUMPER = r"""
import os, sys, time
from crpy.kernel import ptrace
from crpy.dump.parasite import Parasite
pid, mode, heap, length, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if mode in ("mmap-entry", "mmap-exit"):
    import crpy.dump.infect as infect
    check_at = infect._check_op       # each syscall-stop of an injection is checked there
    def stop_and_hang(saved, want_op):
        info = check_at(saved, want_op)
        if info.op == (1 if mode == "mmap-entry" else 2):
            print("injecting", flush=True)
            time.sleep(60)
        return info
    infect._check_op = stop_and_hang
ptrace.seize(pid)
p = Parasite.infect(pid)
p.ping()
if mode == "idle":
    print("infected", flush=True)
    time.sleep(60)
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
first = True
while True:
    os.lseek(fd, 0, 0)
    p.dump_pages([(heap, length)], fd)
    if first:
        print("dumping", flush=True)
        first = False
"""


@pytest.fixture(scope="module")
def victim_exe(tmp_path_factory):
    return build_victim(str(tmp_path_factory.mktemp("victim")))


def _run_dumper(v, mode, out):
    heap = v.heap & ~4095
    length = (v.heap_len - 4096) & ~4095
    argv = [sys.executable, "-c", DUMPER, str(v.pid), mode, str(heap), str(length), out]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))


def _kill_and_check(v, dumper, word, before, delay):
    line = dumper.stdout.readline()
    assert line.strip() == word, f"dumper said {line!r} (exit {dumper.poll()})"
    time.sleep(delay)
    dumper.send_signal(signal.SIGKILL)
    dumper.wait()
    dumper.stdout.close()
    st = wait_untraced(v.pid)
    assert st["TracerPid"] == "0", "the victim is still traced after its dumper died"
    deadline = time.monotonic() + 10   # the self-cure runs once the victim is scheduled: late when loaded
    while snapshot(v.pid) != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert differences(before, snapshot(v.pid)) == []
    v.check()


@pytest.mark.parametrize("mode", ["busy", "sleep"])
def test_dumper_killed_while_parasite_idle(victim_exe, mode, tmp_path):
    with Victim(victim_exe, mode) as v:
        before = snapshot(v.pid)
        dumper = _run_dumper(v, "idle", str(tmp_path / "pages"))
        _kill_and_check(v, dumper, "infected", before, 0.05)


@pytest.mark.parametrize("mode", ["busy", "sleep"])
@pytest.mark.parametrize("where", ["mmap-entry", "mmap-exit"])
def test_dumper_killed_while_injecting_mmap(victim_exe, mode, where, tmp_path):
    """The injected mmap ends in the unmap chain: no mapping is leaked."""
    with Victim(victim_exe, mode) as v:
        before = snapshot(v.pid)
        dumper = _run_dumper(v, where, str(tmp_path / "pages"))
        _kill_and_check(v, dumper, "injecting", before, 0.0)


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.031])
def test_dumper_killed_while_dumping_pages(victim_exe, delay):
    v = Victim(victim_exe, "busy", heap_mb=64)
    out = f"/dev/shm/crpy-test-kill-{os.getpid()}"
    try:
        before = snapshot(v.pid)
        dumper = _run_dumper(v, "dump", out)
        _kill_and_check(v, dumper, "dumping", before, delay)
    finally:
        v.kill()
        if os.path.exists(out):
            os.unlink(out)
