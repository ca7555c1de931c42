"""crpy.kernel.ptrace on real processes: seize, state round trips, siginfo, typed errors."""

import os
import signal
import subprocess
import time

import pytest

from crpy.errors import KernelError, NoSuchProcess, SeizeError
from crpy.kernel import ptrace

from test_parasite_victim import Victim, build_victim, status


@pytest.fixture(scope="module")
def victim_exe(tmp_path_factory):
    return build_victim(str(tmp_path_factory.mktemp("victim")))


@pytest.fixture
def sleeper(victim_exe):
    with Victim(victim_exe, "sleep") as v:
        yield v


def test_seize_state_round_trip(sleeper):
    pid = sleeper.pid
    assert ptrace.seize(pid) == signal.SIGTRAP
    assert status(pid)["TracerPid"] == str(os.getpid())
    regs = ptrace.get_regs(pid)
    xstate = ptrace.get_xstate(pid)
    assert len(xstate) >= 576 and len(xstate) % 8 == 0
    xcr0 = int.from_bytes(xstate[464:472], "little")
    assert xcr0 & 0b111 == 0b111, "x87, SSE and AVX state expected (the victim uses ymm)"
    changed = regs.copy()
    changed.r12 ^= 0xFFFF
    ptrace.set_regs(pid, changed)
    assert ptrace.get_regs(pid).r12 == changed.r12
    ptrace.set_regs(pid, regs)
    ptrace.set_xstate(pid, xstate)
    assert ptrace.get_regs(pid) == regs and ptrace.get_xstate(pid) == xstate
    mask = ptrace.get_sigmask(pid)
    assert mask & (1 << (signal.SIGHUP - 1)), "the victim blocks SIGHUP"
    info = ptrace.get_syscall_info(pid)
    assert info.op == ptrace.SYSCALL_INFO_NONE  # an event-stop, not a syscall-stop
    rseq = ptrace.get_rseq_config(pid)
    assert rseq["pointer"] == 0 or (rseq["size"] >= 32 and rseq["signature"])
    ptrace.detach(pid)
    assert status(pid)["TracerPid"] == "0"
    sleeper.check()


def test_pending_signals_are_visible(sleeper):
    pid = sleeper.pid
    ptrace.seize(pid)
    mask = ptrace.get_sigmask(pid)
    usr2 = 1 << (signal.SIGUSR2 - 1)
    ptrace.set_sigmask(pid, mask | usr2)  # SIGUSR2 is ignored by the victim; blocked, it queues
    os.kill(pid, signal.SIGUSR2)
    shared = ptrace.peek_siginfo(pid, shared=True)
    assert len(shared) == 1
    signo, si_pid = int.from_bytes(shared[0][0:4], "little"), int.from_bytes(shared[0][16:20], "little")
    assert (signo, si_pid) == (signal.SIGUSR2, os.getpid())
    assert ptrace.peek_siginfo(pid) == []
    ptrace.set_sigmask(pid, mask)
    ptrace.detach(pid)
    sleeper.check()


def test_syscall_stop_info(sleeper):
    pid = sleeper.pid
    ptrace.seize(pid)
    ptrace.syscall(pid)
    st = ptrace.wait(pid)
    assert ptrace.is_syscall_stop(st)
    info = ptrace.get_syscall_info(pid)
    assert info.op == ptrace.SYSCALL_INFO_ENTRY and info.nr in (35, 219)  # nanosleep or its restart
    ptrace.detach(pid)
    sleeper.check()


def test_errors_are_typed(victim_exe):
    p = subprocess.Popen(["sleep", "100"])
    try:
        with pytest.raises(KernelError) as e:
            ptrace.get_regs(p.pid)
        assert "not in a ptrace stop" in e.value.one_line()
    finally:
        p.kill()
        p.wait()
    with pytest.raises(NoSuchProcess) as e:
        ptrace.get_regs(p.pid)
    assert str(p.pid) in str(e.value)
    with pytest.raises(SeizeError, match="cannot seize"):
        ptrace.seize(p.pid)
    with pytest.raises(SeizeError) as e:
        ptrace.seize(os.getpid())
    assert "trace itself" in e.value.one_line()


def test_seize_already_traced(victim_exe):
    with Victim(victim_exe, "busy") as v:
        ptrace.seize(v.pid)
        helper = subprocess.run(["python3", "-c", "from crpy.kernel import ptrace\n"
                                 f"try: ptrace.seize({v.pid})\n"
                                 "except Exception as e: raise SystemExit(e.one_line())"],
                                capture_output=True, text=True, cwd=os.getcwd(),
                                env=dict(os.environ, PYTHONPATH=os.getcwd()))
        assert helper.returncode != 0
        assert f"already traced by pid {os.getpid()}" in helper.stderr
        ptrace.detach(v.pid)
        time.sleep(0.01)
        v.check()
