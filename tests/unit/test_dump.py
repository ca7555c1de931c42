"""`crpy dump` of a real C program (tests/unit/dump_target.c, compiled here): the images are read
back and checked against what /proc and the stopped task itself say; failures leave the task
untouched and say so in one line."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crpy.dump import vmas as V
from crpy.images import framing
from crpy.kernel import proc
from tests.unit.crhelpers import (NR_PAUSE, ROOT, build_c, crpy, kill_quietly, read_text, sleeps_in, start_target,
                                  wait_for)

SOURCE = Path(__file__).with_name("dump_target.c")
PAGE = 4096


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("bin"), "dump_target", SOURCE, "-O1")


class Target:
    def __init__(self, binary, workdir, *args):
        self.dir = workdir
        ready = workdir / "ready"
        self.p = start_target([binary, workdir, *args], lambda: read_text(ready).endswith("\n"),
                              "the target to get ready", 10, cwd=str(workdir), start_new_session=False)
        words = ready.read_text().split()
        self.heap, self.guarded, self.filemap, self.shared = (int(w, 16) for w in words[1:])
        self.pid = self.p.pid

    def alive_and_clean(self):
        """Running (not stopped, not traced), back in its pause(), and still answering SIGUSR1
        with its own check.  The wait for pause() matters: a SIGUSR1 whose handler runs before
        the task (re-)enters pause() is a wakeup the target's loop never sees, e.g. one sent as
        a self-cure's munmap ends, before its rt_sigreturn re-issues the pause()."""
        st = proc.status(self.pid)
        assert st.state in "SR" and st.tracer_pid == 0
        wait_for(lambda: sleeps_in(self.pid, NR_PAUSE), 10, what="the target back in pause()")
        self.answers_usr1()

    def answers_usr1(self, count=1):
        """SIGUSR1 ends its pause(); it writes "COUNT X shared page" (COUNT: the handler's runs)."""
        usr1 = self.dir / "usr1"
        if usr1.exists():
            usr1.unlink()
        os.kill(self.pid, signal.SIGUSR1)
        wait_for(lambda: usr1.exists() and usr1.read_text().endswith("\n"), 10, what="the target's answer to SIGUSR1")
        assert usr1.read_text() == f"{count} X shared page\n"

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@pytest.fixture()
def target(target_bin, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    t = Target(target_bin, work)
    yield t
    t.stop()


def read_task_memory(pid, runs, with_rseq=False):
    """The bytes of [(vaddr, length)] of the task, read while it is seized and stopped: with
    process_vm_readv, or through /proc/PID/mem where the task itself may not read (PROT_NONE).
    with_rseq: also return (address, size) of the task's rseq area."""
    from crpy.kernel import ptrace

    readable = [(v.start, v.end) for v in proc.maps(pid, vmflags=False) if v.prot & proc.PROT_READ]
    ptrace.seize(pid)
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            data = b"".join(process_vm_read(pid, a, n) if any(s <= a < e for s, e in readable)
                            else os.pread(fd, n, a) for a, n in runs)
        finally:
            os.close(fd)
        if not with_rseq:
            return data
        rseq = ptrace.get_rseq_config(pid)
        return data, (rseq["pointer"], rseq["size"])
    finally:
        ptrace.detach(pid)


def without_range(data, runs, start, length):
    """`data` (the concatenated bytes of `runs`) with [start, start+length) zeroed."""
    out, pos = bytearray(data), 0
    for vaddr, n in runs:
        lo, hi = max(vaddr, start), min(vaddr + n, start + length)
        if lo < hi:
            out[pos + lo - vaddr:pos + hi - vaddr] = bytes(hi - lo)
        pos += n
    return bytes(out)


def process_vm_read(pid, addr, length):
    from crpy.kernel._sys import ffi, lib

    buf = ffi.new("char[]", length)
    local = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": length})
    remote = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", addr), "iov_len": length})
    assert lib.process_vm_readv(pid, local, 1, remote, 1, 0) == length
    return bytes(ffi.buffer(buf))


def test_dump_leave_running_images_match_the_task(target, tmp_path):
    maps_before = proc.maps(target.pid, vmflags=False)
    imgs = tmp_path / "imgs"
    r = crpy("dump", "-t", target.pid, "-D", imgs, "-v4", "-o", "dump.log", "--leave-running")
    assert r.returncode == 0, r.stderr + (imgs / "dump.log").read_text()
    assert r.stderr == ""
    assert proc.maps(target.pid, vmflags=False) == maps_before, "no parasite mapping left behind"
    pid = target.pid

    # mm: every VMA of /proc (vvar pair merged), then the guard region
    mm = framing.read_image(framing.image_path(imgs, "mm", pid), "mm")[0]
    vmas = [v for v in mm.vmas if not v.status & V.VMA_AREA_GUARD]
    guards = [(v.start, v.end) for v in mm.vmas if v.status & V.VMA_AREA_GUARD]
    want = []
    for v in maps_before:
        if v.path == "[vvar_vclock]" and want and want[-1][1] == v.start:
            want[-1] = (want[-1][0], v.end, want[-1][2])
        else:
            want.append((v.start, v.end, v.prot))
    assert [(v.start, v.end, v.prot) for v in vmas] == want
    assert guards == [(target.guarded + 4 * PAGE, target.guarded + 6 * PAGE)]
    by_start = {v.start: v for v in vmas}
    stack = next(v for v in maps_before if v.path == "[stack]")
    assert by_start[stack.start].status & V.VMA_AREA_STACK and by_start[stack.start].flags & V.MAP_GROWSDOWN
    heap = next(v for v in maps_before if v.path == "[heap]")
    assert by_start[heap.start].status & V.VMA_AREA_HEAP
    assert by_start[target.shared].status & V.VMA_ANON_SHARED
    fm = by_start[target.filemap]
    assert fm.status & V.VMA_FILE_PRIVATE and fm.fd == -1
    st = proc.stat(pid)
    assert (mm.mm_start_code, mm.mm_end_code, mm.mm_start_brk) == (st.start_code, st.end_code, st.start_brk)
    assert mm.mm_brk >= mm.mm_start_brk and list(mm.mm_saved_auxv) == proc.auxv(pid)

    # files: exe, mapped file, fds
    files = {e.id: e.reg for e in framing.read_image(framing.image_path(imgs, "files"), "files")}
    assert files[mm.exe_file_id].name == os.readlink(f"/proc/{pid}/exe")
    assert files[fm.shmid].name == str(target.dir / "data.bin")
    fdinfo = {e.fd: e for e in framing.read_image(framing.image_path(imgs, "fdinfo", 1), "fdinfo")}
    assert sorted(fdinfo) == proc.fds(pid)
    assert files[fdinfo[3].id].name.endswith("data.bin") and files[fdinfo[3].id].pos == 100
    assert files[fdinfo[3].id].flags & os.O_ACCMODE == os.O_RDWR and fdinfo[3].flags == 0
    assert fdinfo[5].id == fdinfo[3].id, "dup'ed fds share one files.img entry (kcmp)"
    assert fdinfo[6].id != fdinfo[3].id and files[fdinfo[6].id].name == files[fdinfo[3].id].name
    log = files[fdinfo[7].id]
    assert log.flags & os.O_APPEND and fdinfo[7].flags == 1, "O_APPEND kept, close-on-exec in fdinfo"
    assert files[fdinfo[0].id].name == "/dev/null" and files[fdinfo[0].id].size == 0

    # pages: every run byte for byte against the stopped task, only wanted pages
    entries = framing.read_image(framing.image_path(imgs, "pagemap", pid), "pagemap")
    head, runs = entries[0], [(e.vaddr, framing.pagemap_nr_pages(e) * PAGE) for e in entries[1:]]
    data = (imgs / f"pages-{head.pages_id}.img").read_bytes()
    assert len(data) == sum(n for _, n in runs)
    live, rseq = read_task_memory(pid, runs, with_rseq=True)
    # The kernel rewrites the rseq area (cpu_id...) whenever the running task moves to another CPU.
    assert without_range(data, runs, *rseq) == without_range(live, runs, *rseq)
    covered = lambda a: any(s <= a < s + n for s, n in runs)  # noqa: E731
    assert covered(target.heap) and covered(target.heap + (8 << 20) - 1)
    assert covered(target.guarded + 8 * PAGE), "the PROT_NONE page with data is saved"
    assert not covered(target.guarded + 4 * PAGE), "guard markers hold no data"
    assert covered(target.filemap + PAGE) and not covered(target.filemap), "only the COW'd file page"
    assert process_vm_read(pid, target.heap, PAGE) == data[_offset(runs, target.heap):][:PAGE]
    shm = framing.read_image(framing.image_path(imgs, "pagemap_shmem", by_start[target.shared].shmid))
    assert [(e.vaddr, framing.pagemap_nr_pages(e)) for e in shm[1:]] == [(PAGE, 1)]
    shm_data = (imgs / f"pages-{shm[0].pages_id}.img").read_bytes()
    assert shm_data.startswith(b"shared page\0") and len(shm_data) == PAGE

    # core: registers of a task sitting in pause(), signal state, creds
    core = framing.read_image(framing.image_path(imgs, "core", pid), "core")[0]
    g = core.thread_info.gpregs
    assert (g.cs, g.ss) == (0x33, 0x2B) and g.fs_base and g.orig_ax == 34
    assert g.ax == (1 << 64) - 514, "pause() interrupted: -ERESTARTNOHAND"
    assert any(v.start <= g.ip < v.end and v.prot & 4 for v in maps_before)
    assert stack.start <= g.sp < stack.end
    assert core.thread_info.fpregs.xsave.xstate_bv & 0x3 or core.thread_info.fpregs.mxcsr
    tc = core.tc
    assert tc.blk_sigset == 1 << (signal.SIGHUP - 1) and tc.comm == "dump_target"
    assert len(tc.sigactions) == 62, "signals 1..64 but SIGKILL and SIGSTOP, as CRIU"
    acts = dict(zip([s for s in range(1, 65) if s not in (signal.SIGKILL, signal.SIGSTOP)], tc.sigactions))
    assert acts[signal.SIGUSR1].sigaction > 1 and acts[signal.SIGUSR2].sigaction == 1
    assert core.thread_core.creds.uid == os.getuid() and core.thread_core.rseq_entry.rseq_abi_size == 32
    pstree = framing.read_image(framing.image_path(imgs, "pstree"), "pstree")[0]
    assert pstree.pid == pid and list(pstree.threads) == [pid]
    target.alive_and_clean()          # last: its SIGUSR1 handler changes its memory


def _offset(runs, addr):
    off = 0
    for s, n in runs:
        if s <= addr < s + n:
            return off + addr - s
        off += n
    raise AssertionError(f"{addr:#x} not dumped")


def test_crit_decodes_every_image(target, tmp_path):
    imgs = tmp_path / "imgs"
    assert crpy("dump", "-t", target.pid, "-D", imgs, "--leave-running").returncode == 0
    names = [n for n in os.listdir(imgs) if n.endswith(".img") and not n.startswith("pages-")]
    assert len(names) >= 9
    for n in names:
        r = subprocess.run(["crit", "decode", "-i", str(imgs / n)], capture_output=True, text=True)
        assert r.returncode == 0, f"crit cannot decode {n}: {r.stderr[-300:]}"


def test_dump_kills_the_task(target, tmp_path):
    r = crpy("dump", "-t", target.pid, "-D", tmp_path / "imgs")
    assert r.returncode == 0, r.stderr
    assert target.p.wait(timeout=5) == -signal.SIGKILL
    assert (tmp_path / "imgs" / f"core-{target.pid}.img").exists()


def test_unsupported_socket_is_one_line_and_task_unharmed(target_bin, tmp_path):
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except OSError as e:
        pytest.skip(f"no AF_VSOCK socket, the unsupported kind of this test ({e.strerror}; CONFIG_VSOCKETS)")
    work = tmp_path / "work"
    work.mkdir()
    t = Target(target_bin, work, "socket")
    try:
        maps = proc.maps(t.pid, vmflags=False)
        r = crpy("dump", "-t", t.pid, "-D", tmp_path / "imgs")
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr
        assert f"pid {t.pid} fd 9" in lines[0] and "AF_VSOCK socket" in lines[0]
        assert proc.maps(t.pid, vmflags=False) == maps
        t.alive_and_clean()
    finally:
        t.stop()


def test_fault_after_infect_leaves_the_task_as_it_was(target, tmp_path):
    maps = proc.maps(target.pid, vmflags=False)
    r = crpy("dump", "-t", target.pid, "-D", tmp_path / "imgs", env=dict(os.environ, CRPY_FAULT="after-infect"))
    assert r.returncode == 1 and "fault point after-infect" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert proc.maps(target.pid, vmflags=False) == maps
    target.alive_and_clean()


def test_missing_pid_is_one_line(tmp_path):
    p = subprocess.Popen(["true"])
    p.wait()
    r = crpy("dump", "-t", p.pid, "-D", tmp_path / "imgs")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert str(p.pid) in r.stderr and "Traceback" not in r.stderr


def test_dumping_crpy_itself_or_an_ancestor_is_refused(tmp_path):
    # `exec` makes the shell's pid crpy's own pid
    r = subprocess.run(["sh", "-c", f"exec {sys.executable} -m crpy dump -t $$ -D {tmp_path}/a"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "crpy itself" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = crpy("dump", "-t", os.getpid(), "-D", tmp_path / "b")
    assert r.returncode == 1 and "ancestor of crpy" in r.stderr and len(r.stderr.strip().splitlines()) == 1


SECCOMP_ALLOW_ALL = """
import ctypes, time
class Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
insns = (Insn * 1)(Insn(0x06, 0, 0, 0x7FFF0000))          # BPF_RET|BPF_K SECCOMP_RET_ALLOW
assert ctypes.CDLL(None).prctl(22, 2, ctypes.byref(Prog(1, insns)), 0, 0) == 0   # PR_SET_SECCOMP, FILTER
print('ready', flush=True)
time.sleep(60)
"""


# Seccomp is per thread: a filter in a thread other than the leader is refused as well.
SECCOMP_IN_A_THREAD = SECCOMP_ALLOW_ALL.replace(
    "assert ctypes.CDLL(None).prctl(22, 2, ctypes.byref(Prog(1, insns)), 0, 0) == 0   # PR_SET_SECCOMP, FILTER\n"
    "print('ready', flush=True)\ntime.sleep(60)",
    "import threading\n"
    "def filtered():\n"
    "    assert ctypes.CDLL(None).prctl(22, 2, ctypes.byref(Prog(1, insns)), 0, 0) == 0\n"
    "    print('ready', flush=True)\n"
    "    time.sleep(60)\n"
    "threading.Thread(target=filtered).start()\ntime.sleep(60)")


# A hugetlbfs file (a MFD_HUGETLB memfd) mapped shared, and a private MAP_HUGETLB mapping whose
# first huge page was unmapped (its VMA starts at object offset 2 MiB): crpy refuses both.
HUGETLB_FILE = """
import mmap, os, time
fd = os.memfd_create("huge", os.MFD_HUGETLB)
os.ftruncate(fd, 2 << 20)
m = mmap.mmap(fd, 2 << 20)
m[0] = 1
print('ready', flush=True)
time.sleep(60)
"""
HUGETLB_CUT = """
import ctypes, mmap, time
m = mmap.mmap(-1, 4 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40000)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
m[(2 << 20) + 1] = 1
assert ctypes.CDLL(None).munmap(ctypes.c_void_p(base), 2 << 20) == 0
print('ready', flush=True)
time.sleep(60)
"""


@pytest.fixture
def two_huge_pages():
    """Two free huge pages of the default size (vm.nr_hugepages raised for the test, then put back)."""
    def free():
        with open("/proc/meminfo") as f:
            return next((int(l.split()[1]) for l in f if l.startswith("HugePages_Free:")), -1)

    path = "/proc/sys/vm/nr_hugepages"
    if free() < 0 or not os.path.exists(path):
        pytest.skip("this kernel has no hugetlb pages")
    before = int(Path(path).read_text())
    if free() < 2:
        try:
            Path(path).write_text(str(before + 2 - free()))
        except OSError as e:
            pytest.skip(f"cannot raise vm.nr_hugepages: {e.strerror}")
    try:
        if free() < 2:
            pytest.skip("the kernel could not make 2 huge pages")
        yield
    finally:
        Path(path).write_text(str(before))


@pytest.mark.parametrize("shape, code, words", [
    ("seccomp", SECCOMP_ALLOW_ALL, "seccomp (mode filter)"),
    ("seccomp-thread", SECCOMP_IN_A_THREAD, "mode filter)"),
    ("hugetlbfs-file", HUGETLB_FILE, "hugetlbfs file mapping"),
    ("hugetlb-cut", HUGETLB_CUT, "private hugetlb mapping cut at its start"),
])
def test_unsupported_shapes_are_refused_untouched(tmp_path, shape, code, words, request):
    if shape.startswith("hugetlb"):
        request.getfixturevalue("two_huge_pages")
    out = tmp_path / "out"
    with open(out, "w") as f:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=f, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "ready" not in out.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        maps = proc.maps(p.pid, vmflags=False)
        r = crpy("dump", "-t", p.pid, "-D", tmp_path / "imgs")
        assert r.returncode == 1 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1
        st = proc.status(p.pid)
        assert st.state in "SR" and st.tracer_pid == 0 and proc.maps(p.pid, vmflags=False) == maps
    finally:
        for kid in proc.children(p.pid):
            os.kill(kid, signal.SIGKILL)
        p.kill()
        p.wait()


def test_stopped_task_is_dumped_and_stays_stopped(target, tmp_path):
    os.kill(target.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while proc.status(target.pid).state != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = crpy("dump", "-t", target.pid, "-D", tmp_path / "imgs", "--leave-running")
    assert r.returncode == 0, r.stderr
    core = framing.read_image(framing.image_path(str(tmp_path / "imgs"), "core", target.pid), "core")[0]
    assert core.tc.task_state == 3 and core.tc.stop_signo == signal.SIGSTOP
    queued = [int.from_bytes(s.siginfo[:4], "little") for s in core.tc.signals_s.signals]
    assert signal.SIGSTOP not in queued, "the stop is in task_state, not queued again"
    time.sleep(0.1)
    st = proc.status(target.pid)
    assert st.state == "T" and st.tracer_pid == 0, "a stopped task is left stopped"
    os.kill(target.pid, signal.SIGCONT)
    target.alive_and_clean()


def dump_paused_in_pages(target, tmp_path):
    """`crpy dump` of the target, paused (CRPY_FAULT) with the parasite in, the first pages out."""
    p = subprocess.Popen([sys.executable, "-m", "crpy", "dump", "-t", str(target.pid), "-D", str(tmp_path / "i")],
                         cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, CRPY_FAULT="pause-in-pages"))
    line = p.stderr.readline().strip()
    if line != "crpy-fault: paused in pages":
        p.kill()
        p.wait()
        raise AssertionError(f"crpy dump did not pause in pages: {line!r}")
    return p


def test_crpy_killed_in_pages_leaves_the_task_running(target, tmp_path):
    maps = proc.maps(target.pid, vmflags=False)
    p = dump_paused_in_pages(target, tmp_path)
    try:
        assert len(proc.maps(target.pid, vmflags=False)) > len(maps), "the parasite is in"
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 10
    while proc.maps(target.pid, vmflags=False) != maps:
        assert time.monotonic() < deadline, "the parasite did not cure itself"
        time.sleep(0.02)
    target.alive_and_clean()


def pending(pid):
    st = proc.status(pid)
    return st.sig_pnd | st.shd_pnd


def test_signal_during_the_dump_still_ends_the_pause_when_crpy_is_killed(target, tmp_path):
    """A SIGUSR1 sent while the parasite runs (every signal blocked) waits; crpy dies and the
    parasite cures itself: the handler runs and the task's pause() returns, as it would have
    had the task been left alone.  (Re-issued under the handler, pause() would sleep on and
    the target, which looks at its flag after pause() returns, would never answer.)"""
    maps = proc.maps(target.pid, vmflags=False)
    p = dump_paused_in_pages(target, tmp_path)
    try:
        os.kill(target.pid, signal.SIGUSR1)
        wait_for(lambda: pending(target.pid) & 1 << signal.SIGUSR1 - 1, 10, what="SIGUSR1 pending")
    finally:
        p.kill()
        p.wait()
    usr1 = target.dir / "usr1"
    wait_for(lambda: usr1.exists() and usr1.read_text().endswith("\n"), 10, what="the target's answer to SIGUSR1")
    assert usr1.read_text() == "1 X shared page\n"
    wait_for(lambda: proc.maps(target.pid, vmflags=False) == maps, 10, what="the parasite's self-cure")
    target.alive_and_clean()


def test_unlinked_cwd_comes_back_as_a_removed_directory(tmp_path):
    """A cwd removed since is a ghost directory: made again for the restore, removed after it."""
    gone = tmp_path / "gone"
    gone.mkdir()
    p = subprocess.Popen(["sleep", "60"], cwd=gone, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        gone.rmdir()
        r = crpy("dump", "-t", p.pid, "-D", tmp_path / "imgs")
        assert r.returncode == 0, r.stderr
        p.wait(timeout=10)
        r = crpy("restore", "-D", tmp_path / "imgs", "-d")
        assert r.returncode == 0, r.stderr
        assert os.readlink(f"/proc/{p.pid}/cwd") == f"{gone} (deleted)"
        assert not gone.exists()
    finally:
        kill_quietly(p.pid)
        p.wait()


def test_image_write_failure_after_infect_is_one_line_and_task_unharmed(target, tmp_path):
    maps = proc.maps(target.pid, vmflags=False)
    imgs = tmp_path / "imgs"
    (imgs / "pages-1.img").mkdir(parents=True)            # the pages image cannot be opened for writing
    r = crpy("dump", "-t", target.pid, "-D", imgs)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "pages-1.img" in r.stderr
    assert proc.maps(target.pid, vmflags=False) == maps
    target.alive_and_clean()


def test_a_mapped_file_is_looked_at_once_per_dump_unless_unlinked():
    """Every task of a tree maps the same libraries: one stat per (device, inode, path) of the
    maps lines for the whole dump; an unlinked file's mapping is looked at each time."""
    from types import SimpleNamespace

    from crpy.dump.files import FileTable

    files, looked = FileTable(), []
    stat = lambda pid, v: looked.append((pid, v.start)) or os.stat("/")  # noqa: E731
    libc = [SimpleNamespace(start=s, dev=(8, 1), inode=42, path="/lib/libc.so.6", deleted=False) for s in (1, 2)]
    gone = [SimpleNamespace(start=s, dev=(8, 1), inode=43, path="/tmp/x", deleted=True) for s in (3, 4)]
    for pid, v in ((10, libc[0]), (11, libc[1]), (10, gone[0]), (11, gone[1])):
        assert V._mapped_file_stat(pid, v, files, stat).st_ino == os.stat("/").st_ino
    assert looked == [(10, 1), (10, 3), (11, 4)]
