"""crpy.kernel.proc and crpy.kernel.pagemap against real processes started here."""

import mmap
import os
import signal
import subprocess
import sys
import time

import pytest

from crpy.errors import NoSuchProcess
from crpy.kernel import pagemap, proc
from tests.unit.crhelpers import read_text, wait_for

CHILD = r"""
import ctypes, mmap, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
m = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
for i in range(0, 16):
    m[i * 4096] = 1                         # pages 0..15 written
for i in range(16, 32):
    _ = m[i * 4096]                         # pages 16..31 only read: the zero page
assert libc.madvise(ctypes.c_void_p(base + 40 * 4096), 4 * 4096, 102) == 0   # guard 40..43
f = open(sys.argv[1], "w+b")
f.write(b"x" * 8192); f.flush(); f.seek(1234)
fm = mmap.mmap(f.fileno(), 8192, flags=mmap.MAP_PRIVATE)
_ = fm[0]; fm[4096] = 7                     # page 0 read (file page), page 1 COW'd
os.umask(0o027)
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
fm_base = ctypes.addressof(ctypes.c_char.from_buffer(fm))
print(base, fm_base, f.fileno(), flush=True)
time.sleep(60)
"""


@pytest.fixture()
def child(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "file.bin")],
                         stdout=subprocess.PIPE, text=True)
    base, fm_base, fd = map(int, p.stdout.readline().split())
    yield p, base, fm_base, fd
    p.kill()
    p.wait()


def test_maps_and_vmflags(child):
    p, base, fm_base, _ = child
    vmas = proc.maps(p.pid)
    assert vmas == sorted(vmas, key=lambda v: v.start)
    anon = next(v for v in vmas if v.start <= base < v.end)
    assert anon.prot == proc.PROT_READ | proc.PROT_WRITE and not anon.shared and not anon.is_file
    fmap = next(v for v in vmas if v.start == fm_base)
    assert fmap.path.endswith("file.bin") and fmap.inode == os.stat(fmap.path).st_ino
    stack = next(v for v in vmas if v.path == "[stack]")
    assert "gd" in stack.vmflags, "the stack carries VmFlags gd"
    assert stack.page_size == 4096 and anon.page_size == 4096, "smaps KernelPageSize, in bytes"
    specials = {v.special for v in vmas}
    assert {"[vdso]", "[vvar]", "[heap]", "[stack]"} <= specials
    plain = proc.maps(p.pid, vmflags=False)
    assert [(v.start, v.end, v.prot, v.path) for v in plain] == [(v.start, v.end, v.prot, v.path) for v in vmas]


def test_maps_again_gives_equal_vmas_of_their_own(child, monkeypatch):
    """maps() parses a head line once per run: a second read of the same task gives equal
    Vmas, each its own object (a caller may change one), also once the cache was emptied."""
    p, _, _, _ = child
    first, again = None, proc.maps(p.pid)
    for _ in range(100):                 # once the child is in its sleep, its maps stay as they are
        first, again = again, proc.maps(p.pid)
        if again == first:
            break
        time.sleep(0.02)
    assert again == first and all(a is not b for a, b in zip(first, again))
    again[0].pgoff += 4096
    assert proc.maps(p.pid) == first
    monkeypatch.setattr(proc, "_heads_seen", {})
    monkeypatch.setattr(proc, "_vmflags_seen", {})
    monkeypatch.setattr(proc, "_SEEN_MAX", 2)        # emptied as it fills: kept small, same result
    assert proc.maps(p.pid) == first and len(proc._heads_seen) <= 2


def test_smaps_parse_every_vma_and_odd_names(tmp_path):
    """maps() cuts smaps at its VmFlags lines: a mapped file whose name holds a newline (the
    kernel escapes it) and the words of smaps' own lines changes nothing; every VMA has flags."""
    path = tmp_path / "a\nVmFlags: zz\nKernelPageSize: 9 kB"
    path.write_bytes(b"z" * 4096)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)
        try:
            vmas = proc.maps(os.getpid())
        finally:
            m.close()
    assert vmas == sorted(vmas, key=lambda v: v.start)
    assert all(v.vmflags and "zz" not in v.vmflags for v in vmas)
    odd = [v for v in vmas if "VmFlags" in v.path]
    assert len(odd) == 1 and odd[0].page_size == 4096 and "rd" in odd[0].vmflags


def test_deleted_suffix(tmp_path):
    path = tmp_path / "gone"
    path.write_bytes(b"z" * 4096)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)
        os.unlink(path)
        v = [v for v in proc.maps(os.getpid()) if v.path == str(path)]
        m.close()
    assert v and v[0].deleted


def test_stat_status_auxv_links(child):
    p, _, _, fd = child
    st = proc.stat(p.pid)
    assert st.ppid == os.getpid() and st.state in "SR" and st.num_threads == 1
    assert 0 < st.start_code < st.end_code and st.arg_start < st.arg_end <= st.env_start < st.env_end
    assert st.start_brk > 0 and st.start_stack > 0
    status = proc.status(p.pid)
    assert status.pid == p.pid and status.ppid == os.getpid() and status.threads == 1
    assert status.umask == 0o027
    assert status.sig_blk & (1 << (signal.SIGUSR2 - 1))
    assert status.sig_cgt & (1 << (signal.SIGUSR1 - 1))
    assert len(status.uids) == 4 and len(status.gids) == 4
    assert status.cap_eff == int(proc.status(os.getpid()).raw["CapEff"], 16)
    aux = proc.auxv(p.pid)
    pairs = dict(zip(aux[::2], aux[1::2]))
    assert pairs[6] == 4096 and 0 not in pairs, "AT_PAGESZ present, AT_NULL dropped"
    assert os.path.samefile(proc.exe(p.pid), sys.executable)
    assert proc.cwd(p.pid) == os.getcwd() and proc.root(p.pid) == "/"
    assert proc.tasks(p.pid) == [p.pid] and proc.children(p.pid) == []
    assert p.pid in proc.children(os.getpid())
    assert len(proc.limits(p.pid)) == 16


def test_fds_and_fdinfo(child):
    p, _, _, fd = child
    assert fd in proc.fds(p.pid)
    assert proc.fd_target(p.pid, fd).endswith("file.bin")
    info = proc.fdinfo(p.pid, fd)
    assert info.pos == 1234 and info.flags & os.O_RDWR and info.mnt_id > 0


def test_comm_with_parens_and_spaces(tmp_path):
    exe = tmp_path / "a) b (c"
    os.symlink("/bin/sleep", exe)
    p = subprocess.Popen([str(exe), "30"])
    try:
        # until the exec is done the child is a copy of pytest, named as it (0.05 s was too short under load)
        wait_for(lambda: read_text(f"/proc/{p.pid}/comm") == "a) b (c\n", what="the exec of the renamed sleep")
        st = proc.stat(p.pid)
        assert st.comm == "a) b (c" and st.ppid == os.getpid()
    finally:
        p.kill()
        p.wait()


def test_missing_pid_is_no_such_process():
    p = subprocess.Popen(["true"])
    p.wait()
    for reader in (proc.stat, proc.status, proc.maps, proc.auxv, proc.fds, proc.exe):
        with pytest.raises(NoSuchProcess) as info:
            reader(p.pid)
        assert str(p.pid) in info.value.one_line()


def test_pagemap_scan_present_zero_cow_guard(child):
    p, base, fm_base, _ = child
    with pagemap.Pagemap(p.pid) as pm:
        runs = pm.data_runs(base, base + 64 * 4096)
        assert [(s - base, e - base) for s, e, _ in runs] == [(0, 16 * 4096)], \
            "written pages only: not the zero-page ones, not the guard markers"
        cow = pm.data_runs(fm_base, fm_base + 8192)
        assert [(s - fm_base, e - fm_base) for s, e, _ in cow] == [(4096, 8192)], "only the COW'd page"
        guards = pm.guard_runs(base, base + 64 * 4096)
        assert [(s - base, e - base) for s, e, _ in guards] == [(40 * 4096, 44 * 4096)]


def test_pagemap_scan_many_runs_resumes(tmp_path):
    """More runs than one ioctl's vector holds: every run exactly once (walk_end resume)."""
    n = 3 * 4096 + 17
    m = mmap.mmap(-1, 2 * n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    import ctypes

    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    for i in range(n):
        m[2 * i * 4096] = 1
    with pagemap.Pagemap(os.getpid()) as pm:
        runs = pm.data_runs(base, base + 2 * n * 4096)
    del base
    assert [(s, e) for s, e, _ in runs] == [(r[0], r[0] + 4096) for r in runs]
    assert len(runs) == n and len({s for s, _, _ in runs}) == n
    assert all(b[0] >= a[1] for a, b in zip(runs, runs[1:]))


def test_pagemap_of_missing_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(NoSuchProcess):
        pagemap.Pagemap(p.pid)


def test_hugetlb_page_size_flags():
    """The huge page size rides in mmap flags as log2 << MAP_HUGE_SHIFT (MAP_HUGE_2MB, _1GB)."""
    from crpy.kernel import hugetlb

    assert hugetlb.size_flag(2 << 20) == 21 << 26 and hugetlb.size_flag(1 << 30) == 30 << 26
    assert hugetlb.page_size(hugetlb.MAP_HUGETLB | hugetlb.size_flag(2 << 20)) == 2 << 20
    assert hugetlb.page_size(hugetlb.size_flag(2 << 20)) == 0, "no MAP_HUGETLB, no huge page"
    with pytest.raises(ValueError):
        hugetlb.size_flag(3 << 20)
