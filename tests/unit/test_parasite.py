"""The dump-side parasite on real processes: infect, talk, cure, and leave no trace.

Victims (test_parasite_victim.py) check their own ymm/r12-r15 registers; after the cure their
maps, fds and signal/status fields must equal the ones before, nobody traces them, and they
keep running and pass their register check.
"""

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest

from crpy.dump import infect_mem
from crpy.dump.parasite import Parasite
from crpy.kernel import ptrace
from crpy.kernel.syscalls import NR, sys_call

from test_parasite_victim import Victim, build_victim, differences, snapshot, status
from tests.unit.crhelpers import build_c, wait_for

KCMP_FILE = 0


@pytest.fixture(scope="module")
def victim_exe(tmp_path_factory):
    return build_victim(str(tmp_path_factory.mktemp("victim")))


@pytest.fixture(params=["busy", "sleep"])
def victim(request, victim_exe):
    with Victim(victim_exe, request.param) as v:
        v.check()
        yield v


@contextlib.contextmanager
def left_as_before(v):
    """Seize v for the test's parasite (yields v's snapshot from before); once the test is done
    with it, detach: v must then be exactly as before and pass its own register check."""
    before = snapshot(v.pid)
    ptrace.seize(v.pid)
    yield before
    ptrace.detach(v.pid)
    assert differences(before, snapshot(v.pid)) == []
    v.check()


def _sigset(hexmask):
    return int(hexmask, 16)


def _check_sigactions(pid, acts):
    st = status(pid)
    caught = ignored = 0
    for i, (handler, flags, restorer, mask) in enumerate(acts):
        if handler == 1:
            ignored |= 1 << i
        elif handler > 1:
            caught |= 1 << i
    assert caught == _sigset(st["SigCgt"])
    assert ignored == _sigset(st["SigIgn"])
    handler, flags, restorer, mask = acts[signal.SIGUSR1 - 1]
    assert flags & 0x08000000  # SA_ONSTACK
    assert flags & 0x04000000 and restorer  # SA_RESTORER: glibc's __restore_rt
    assert mask == 1 << (signal.SIGINT - 1)


def _check_misc(v, misc):
    st = status(v.pid)
    stat = open(f"/proc/{v.pid}/stat").read().rsplit(")", 1)[1].split()
    assert misc["pid"] == misc["tid"] == v.pid
    assert misc["ppid"] == int(st["PPid"]) == os.getpid()
    assert (misc["pgid"], misc["sid"]) == (int(stat[2]), int(stat[3]))
    assert misc["umask"] == int(st["Umask"], 8) == 0o027
    assert misc["no_new_privs"] == int(st["NoNewPrivs"])
    assert misc["seccomp"] == int(st["Seccomp"])
    assert misc["altstack"] == (v.altstack, 0, 65536)
    assert misc["name"] == "victim"
    assert misc["dumpable"] == 1
    real = misc["itimers"][0]
    assert real[:2] == (500, 0) and 0 < real[2] <= 1000, f"ITIMER_REAL {real}"
    assert misc["itimers"][1] == misc["itimers"][2] == (0, 0, 0, 0)
    brk_vma = [line for line in open(f"/proc/{v.pid}/maps") if line.endswith("[heap]\n")]
    if brk_vma:
        assert misc["brk"] == int(brk_vma[0].split("-")[1].split()[0], 16)
    soft, hard = misc["rlimits"]["nofile"]
    assert (soft, hard) == tuple(int(x) for x in _limits(v.pid, "Max open files"))


def _limits(pid, name):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith(name):
            return line[len(name):].split()[:2]
    raise AssertionError(name)


def _check_pages(p, v, tmp_path):
    runs = [(v.heap & ~4095, 1 << 20), ((v.heap & ~4095) + (2 << 20), 8192), (v.altstack & ~4095, 4096)]
    out = tmp_path / "pages.img"
    with open(out, "wb") as f:
        n = p.dump_pages(runs, f.fileno())
    expected = b"".join(infect_mem.read(v.pid, a, n) for a, n in runs)
    assert n == len(expected)
    assert out.read_bytes() == expected


def _check_drain(p, v):
    fds = sorted(int(fd) for fd in os.listdir(f"/proc/{v.pid}/fd"))
    got = p.drain_fds(fds)
    try:
        assert len(got) == len(fds)
        for theirs, ours in zip(fds, got):
            assert sys_call(NR.kcmp, v.pid, os.getpid(), KCMP_FILE, theirs, ours) == 0
            st = os.stat(f"/proc/{v.pid}/fd/{theirs}")
            assert (os.fstat(ours).st_ino, os.fstat(ours).st_dev) == (st.st_ino, st.st_dev)
    finally:
        for fd in got:
            os.close(fd)


def test_infect_talk_cure(victim, tmp_path):
    v = victim
    with left_as_before(v) as before:
        p = Parasite.infect(v.pid)
        try:
            p.ping(41)
            _check_pages(p, v, tmp_path)
            _check_sigactions(v.pid, p.sigactions())
            _check_misc(v, p.misc())
            _check_drain(p, v)
            maps_in = open(f"/proc/{v.pid}/maps").read()
            assert maps_in != before["maps"], "the parasite mapping should be visible while it runs"
        except BaseException:
            p.abort()
            raise
        p.cure()
        assert ptrace.get_regs(v.pid) == p.saved.regs
        assert ptrace.get_xstate(v.pid) == p.saved.xstate
        assert ptrace.get_sigmask(v.pid) == p.saved.sigmask
    assert status(v.pid)["TracerPid"] == "0"


def test_pages_are_hashed_as_they_are_spliced(victim_exe, tmp_path, monkeypatch):
    """The parasite's crc32c digests of the pages it splices (crpy-digests' chunks) equal the
    file's: across DUMP commands (a 1 MiB pipe: 512 KiB each, pipelined), across dump_pages
    calls, and after bytes the dumper wrote itself between them (state() handed over)."""
    from crpy.dump import parasite as par
    from crpy.images import digest
    from crpy.kernel.crc32c import crc32c

    monkeypatch.setattr(par, "MAX_PIPE", 1 << 20)
    path = tmp_path / "pages-1.img"
    fed = digest._Fed(str(path), lambda p, r: None)
    with Victim(victim_exe, "sleep") as v, left_as_before(v):
        heap = v.heap & ~4095
        runs = [(heap, 1 << 20), (heap + (2 << 20), 8192), (v.altstack & ~4095, 4096), (heap + 4096, 3 << 19)]
        p = Parasite.infect(v.pid)
        try:
            with open(path, "wb") as f:
                f.write(b"by the dumper" * 100)
                fed.update(b"by the dumper" * 100)
                f.flush()
                p.dump_pages(runs, f.fileno(), fed)
                f.write(b"x" * 3000)
                fed.update(b"x" * 3000)
                f.flush()
                p.dump_pages(runs[:2], f.fileno(), fed)
        except BaseException:
            p.abort()
            raise
        p.cure()
    data = path.read_bytes()
    mib = digest.CHUNK_SIZE
    assert len(fed.chunks) * mib + fed.into == len(data) > 3 * mib and fed.into
    want = [crc32c(data[i:i + mib]) for i in range(0, len(data), mib)]
    assert fed.chunks + [fed.crc] == want


def test_drain_more_fds_than_one_message(victim_exe):
    """More than 253 fds (SCM_MAX_FD) go out in several messages."""
    with Victim(victim_exe, "busy") as v:
        ptrace.seize(v.pid)
        p = Parasite.infect(v.pid)
        try:
            got = p.drain_fds([0] * 300 + [1])
            assert len(got) == 301
            assert all(sys_call(NR.kcmp, v.pid, os.getpid(), KCMP_FILE, 0, fd) == 0 for fd in got[:300])
            for fd in got:
                os.close(fd)
            with pytest.raises(Exception):
                p.drain_fds([987])  # not open in the victim
            p.ping()  # the channel survives a failed command
        finally:
            p.cure()
        ptrace.detach(v.pid)
        v.check()


def test_abort_removes_parasite(victim_exe):
    """The forced unload (error path) also leaves nothing behind."""
    with Victim(victim_exe, "sleep") as v, left_as_before(v):
        p = Parasite.infect(v.pid)
        p.ping()
        p.dump_pages([(v.heap & ~4095, 4096)], os.open("/dev/null", os.O_WRONLY))
        p.abort()
        assert ptrace.get_regs(v.pid) == p.saved.regs


def test_victim_of_another_user(victim_exe, tmp_path):
    """The page pipe reaches the task by SCM_RIGHTS: no /proc access from the task needed."""
    exe = f"/tmp/crpy-victim-{os.getpid()}"
    shutil.copy(victim_exe, exe)
    os.chmod(exe, 0o755)
    try:
        with Victim(exe, "sleep", user=65534) as v, left_as_before(v):
            p = Parasite.infect(v.pid)
            try:
                assert p.misc()["euid"] == 65534
                _check_pages(p, v, tmp_path)
            finally:
                p.cure()
    finally:
        os.unlink(exe)


def test_group_stop_while_parasite_runs(victim_exe):
    """SIGSTOP meanwhile: the parasite keeps serving; after detach the task is stopped."""
    with Victim(victim_exe, "busy") as v:
        ptrace.seize(v.pid)
        p = Parasite.infect(v.pid)
        try:
            os.kill(v.pid, signal.SIGSTOP)
            time.sleep(0.3)  # the dumper notices the group-stop while waiting for a reply
            p.ping()
            p.misc()
        finally:
            p.cure()
        ptrace.detach(v.pid)
        # detached, the task goes from its trace stop through the group stop again: a moment running
        wait_for(lambda: status(v.pid)["State"].startswith("T"), 10, what="the task stopped (the SIGSTOP kept)")
        os.kill(v.pid, signal.SIGCONT)
        v.check()


def test_parasite_fault_is_recovered(victim_exe):
    """A parasite that faults (here: ud2 written over its MISC handler) is reported as a
    typed error and removed by force; the task is left exactly as seized."""
    from crpy import blobs
    from crpy.dump.infect_channel import TaskStopped

    with Victim(victim_exe, "sleep") as v, left_as_before(v):
        p = Parasite.infect(v.pid)
        infect_mem.write(v.pid, p.saved.map_base + blobs.load("parasite").sym("do_misc"), b"\x0f\x0b")
        with pytest.raises(TaskStopped, match="signal 4"):
            p.misc()
        p.abort()
        assert ptrace.get_regs(v.pid) == p.saved.regs


def test_failed_page_dump_then_cure(victim_exe):
    """vmsplice of unmapped memory fails with a typed error; the cure still leaves no trace."""
    from crpy.errors import ParasiteError

    with Victim(victim_exe, "busy", heap_mb=64) as v, left_as_before(v):
        p = Parasite.infect(v.pid)
        runs = [(v.heap & ~4095, 48 << 20), (0x10000, 4096), (v.heap & ~4095, 48 << 20)]
        with open(os.devnull, "wb") as out, pytest.raises(ParasiteError, match="Bad address"):
            p.dump_pages(runs, out.fileno())
        p.cure()
        assert ptrace.get_regs(v.pid) == p.saved.regs


def test_idle_timeout_cures_by_itself(victim_exe):
    """A dumper that stays silent longer than idle_ms: the parasite leaves on its own."""
    from crpy.errors import ParasiteError

    with Victim(victim_exe, "busy") as v, left_as_before(v) as before:
        p = Parasite.infect(v.pid, idle_ms=200)
        p.ping()
        deadline = time.monotonic() + 10
        while snapshot(v.pid)["maps"] != before["maps"] and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ParasiteError):
            p.ping()
        with pytest.raises(ParasiteError):
            p.cure()  # nothing left to cure: an error, but the task is stopped and untouched


PKEY_VICTIM_C = r"""
#define _GNU_SOURCE
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
    char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 0x5a, 8192);
    int k = pkey_alloc(0, 0);
    if (k < 0) { perror("pkey_alloc"); return 1; }
    pkey_mprotect(p, 8192, PROT_READ | PROT_WRITE, k);
    pkey_set(k, PKEY_DISABLE_ACCESS);  /* the task itself can no longer touch these pages */
    printf("%p\n", p);
    fflush(stdout);
    for (;;)
        pause();
}
"""


def test_pages_behind_a_denied_protection_key(tmp_path):
    """The parasite opens every pkey (PKRU = 0) for itself; the task's PKRU comes back."""
    if " pku " not in open("/proc/cpuinfo").read():
        pytest.skip("this CPU has no protection keys (no pku in /proc/cpuinfo)")
    exe = build_c(tmp_path, "pk", PKEY_VICTIM_C, "-O2")
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, text=True)
    try:
        addr = int(proc.stdout.readline(), 16)
        ptrace.seize(proc.pid)
        xstate = ptrace.get_xstate(proc.pid)
        p = Parasite.infect(proc.pid)
        try:
            out = tmp_path / "pages"
            with open(out, "wb") as f:
                assert p.dump_pages([(addr, 8192)], f.fileno()) == 8192
            assert out.read_bytes() == b"\x5a" * 8192
        finally:
            p.cure()
        assert ptrace.get_xstate(proc.pid) == xstate  # PKRU included
        ptrace.detach(proc.pid)
    finally:
        proc.kill()
        proc.wait()


SECCOMP_VICTIM_C = r"""
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void)
{
    char c;
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);  /* from now on: read, write, exit, sigreturn */
    write(1, "ready\n", 6);
    while (read(0, &c, 1) == 1)
        write(1, &c, 1);
    return 0;
}
"""


def test_seccomp_strict_task(tmp_path):
    """Under SECCOMP_MODE_STRICT every parasite syscall but read/write would kill the task:
    infection suspends seccomp (PTRACE_O_SUSPEND_SECCOMP) while the parasite is in."""
    exe = build_c(tmp_path, "sc", SECCOMP_VICTIM_C, "-O2")
    proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        before = snapshot(proc.pid)
        assert before["status"]["Seccomp"] == "1"
        ptrace.seize(proc.pid)
        p = Parasite.infect(proc.pid)
        try:
            assert p.misc()["seccomp"] == 1
            assert len(p.sigactions()) == 64
        finally:
            p.cure()
        ptrace.detach(proc.pid)
        assert differences(before, snapshot(proc.pid)) == []
        proc.stdin.write(b"x")
        proc.stdin.flush()
        assert proc.stdout.read(1) == b"x", "the task must still run, under its seccomp mode"
    finally:
        proc.kill()
        proc.wait()


def test_task_stopped_before_the_dump(victim_exe):
    """A task already in group-stop (kill -STOP) is infected from that stop and stays stopped."""
    with Victim(victim_exe, "sleep") as v:
        os.kill(v.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not status(v.pid)["State"].startswith("T") and time.monotonic() < deadline:
            time.sleep(0.01)
        before = snapshot(v.pid)
        assert ptrace.seize(v.pid) == signal.SIGSTOP
        p = Parasite.infect(v.pid)
        try:
            p.ping()
        finally:
            p.cure()
        ptrace.detach(v.pid)
        wait_for(lambda: status(v.pid)["State"].startswith("T"), 10, what="the task stopped again")
        assert differences(before, snapshot(v.pid)) == []
        os.kill(v.pid, signal.SIGCONT)
        v.check()


def test_pick_address_finds_a_free_range_below_the_stack():
    from crpy.dump.infect import STACK_ROOM, pick_address
    from crpy.dump.infect_mem import Mapping

    GiB = 1 << 30
    stack_top = 0x7FFF00000000
    maps = [Mapping(0x555500000000, 0x555500100000, "r-xp", "/bin/x"),
            Mapping(stack_top - 10 * GiB, stack_top - 9 * GiB, "r-xp", "/lib/libc.so.6"),
            Mapping(stack_top - 64 * 4096, stack_top, "rw-p", "[stack]"),
            Mapping(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", "[vsyscall]")]
    size = 344 * 1024
    a = pick_address(maps, size, stack_top - 4096)
    stack_start = stack_top - 64 * 4096
    assert a % 4096 == 0 and a + size + 4096 <= stack_start - STACK_ROOM
    assert all(a + size + 4096 <= m.start or a >= m.end + 4096 for m in maps)
    assert a > stack_top - 9 * GiB, "the highest free range below the stack"


def test_frame_restart_fixup():
    from crpy.dump import emergency_frame

    r = ptrace.Regs()
    r.rax, r.orig_rax, r.rip, r.rsp = (-516) & (2**64 - 1), 230, 0x1002, 0x7000
    f = emergency_frame.restart_fixup(r)
    assert (f.rax, f.rip) == (230, 0x1000)
    xstate = bytearray(2440)
    struct.pack_into("<Q", xstate, 464, 0x207)
    frame = emergency_frame.build(r, bytes(xstate), 0x4000, 0xAAAA)
    assert frame.addr % 16 == 8 and frame.end <= 0x7000 - 128
    fp = struct.unpack_from("<Q", frame.data, 48 + 152 + 32)[0]
    assert fp % 64 == 0
    sw = struct.unpack_from("<IIQI", frame.data, fp - frame.start + 464)
    assert sw == (0x46505853, 2444, 0x207, 2440)
    assert struct.unpack_from("<I", frame.data, fp - frame.start + 2440)[0] == 0x46505845
    # where the parasite's self-cure reads the mask and rewrites rax/rip (FRAME_*_OFF in parasite.c)
    assert struct.unpack_from("<Q", frame.data, 152)[0] == 230
    assert struct.unpack_from("<Q", frame.data, 176)[0] == 0x1000
    assert struct.unpack_from("<Q", frame.data, 304)[0] == 0x4000
    assert emergency_frame.restart_info(r) == (0x1002, -516)
    r.rax = 0
    assert emergency_frame.restart_info(r) == (0, 0)
