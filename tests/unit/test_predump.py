"""Pre-dump chains (crpy pre-dump, dump --prev-images-dir --track-mem, restore through the chain).

The target (predump_target.c) writes, maps, unmaps, moves and grows memory on each SIGUSR1 and
checks every page against the step that last wrote it after the restore: a page restored from a
stale round fails it.  Tracking is userfaultfd WP_ASYNC + PAGEMAP_SCAN (Linux 6.7+)."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.crhelpers import (NR_PAUSE, ROOT, SelfCheckingTarget, build_c, crpy, log_tail, read_text, sleeps_in,
                                  wait_for)

HERE = Path(__file__).parent
PE_PARENT = 1
NR_RT_SIGSUSPEND = 130              # x86_64


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory):
    if not _wp_async_available():
        pytest.skip("userfaultfd WP_ASYNC (Linux 6.7+) is not available: no pre-dump tracking")
    return build_c(tmp_path_factory.mktemp("predump"), "predump_target", HERE / "predump_target.c")


def _wp_async_available():
    try:
        with open("/proc/sys/vm/unprivileged_userfaultfd"):
            pass
        release = tuple(int(x) for x in os.uname().release.split(".")[:2])
        return release >= (6, 7) and os.geteuid() == 0
    except (OSError, ValueError):
        return False


def _step(t, n):
    os.kill(t.pid, signal.SIGUSR1)
    wait_for(lambda: f"step {n}\n" in read_text(t.out), what=f"step {n}")
    _settle(t)


def _settle(t):
    """Wait until the target sits in sigsuspend(): it writes "ready" and each "step" with an
    fopen'ed file whose fclose comes after the write, so its fd table is settled only then."""
    wait_for(lambda: sleeps_in(t.pid, NR_RT_SIGSUSPEND), what="the target to sit in sigsuspend()")


def _settled_fds(t):
    _settle(t)
    return sorted(os.listdir(f"/proc/{t.pid}/fd"))


def _pre_dump(t, d, prev=None, env=None):
    args = ["pre-dump", "-t", t.pid, "-D", d, "-v4", "-o", "pd.log"]
    if prev:
        args += ["--prev-images-dir", prev, "--track-mem"]
    return crpy(*args, env=env)


def _pagemap_flags(d, pid):
    from crpy.images import framing

    return [e.flags for e in framing.read_image(framing.image_path(str(d), "pagemap", pid), "pagemap")[1:]]


def _holder_alive(pid):
    from crpy.dump.memtrack_holder import socket_name

    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(socket_name(pid))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _uffd_areas(pid):
    return [ln for ln in read_text(f"/proc/{pid}/smaps").splitlines()
            if ln.startswith("VmFlags:") and " uw" in ln]


@pytest.mark.parametrize("rounds", [1, 2, 5])
def test_chain_restores_byte_exact(target_bin, tmp_path, rounds):
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        fds = _settled_fds(t)
        sizes = []
        for i in range(1, rounds + 1):
            _step(t, i)
            r = _pre_dump(t, tmp_path / f"p{i}", f"../p{i - 1}" if i > 1 else None)
            assert r.returncode == 0, r.stderr + log_tail(tmp_path / f"p{i}" / "pd.log")
            sizes.append(os.path.getsize(tmp_path / f"p{i}" / "pages-1.img"))
            assert sorted(os.listdir(f"/proc/{t.pid}/fd")) == fds, "the task's fd table changed"
            assert _uffd_areas(t.pid) and _holder_alive(t.pid)
            if i > 1:
                assert PE_PARENT in _pagemap_flags(tmp_path / f"p{i}", t.pid)
                assert sizes[-1] < sizes[0], f"round {i} wrote {sizes[-1]} bytes, round 1 {sizes[0]}"
        _step(t, rounds + 1)
        final = tmp_path / "final"
        r = crpy("dump", "-t", t.pid, "-D", final, "--prev-images-dir", f"../p{rounds}", "--track-mem",
                 "-v4", "-o", "dump.log")
        assert r.returncode == 0, r.stderr + log_tail(final / "dump.log")
        assert os.readlink(final / "parent") == f"../p{rounds}"
        assert PE_PARENT in _pagemap_flags(final, t.pid)
        assert os.path.getsize(final / "pages-1.img") < sizes[0]
        _check_show_sources(final, t.pid, rounds)
        t.proc.wait(timeout=10)
        wait_for(lambda: not _holder_alive(t.pid), what="the tracking holder to end")
        t.restore(final)
        t.verdict(main_sleeps_in=None)


def _check_show_sources(final, pid, rounds):
    """crpy show names the pages file each page comes from, in this round or an earlier one."""
    import json

    r = crpy("show", final / f"pagemap-{pid}.img")
    assert r.returncode == 0, r.stderr
    entries = json.loads(r.stdout)["entries"][1:]
    sources = [src for e in entries for src in e["source"]]
    assert all(os.path.basename(os.path.dirname(src)) in {"final"} | {f"p{i}" for i in range(1, rounds + 1)}
               for src in sources), sources
    for e in entries:
        here = all(src.startswith(str(final) + "/") for src in e["source"])
        assert here == (not e["flags"] & PE_PARENT), e


def test_chain_break_fails(target_bin, tmp_path):
    """The target's own check can fail: ZDTM_BREAK=1 damages a page before it."""
    env = dict(os.environ, ZDTM_BREAK="1")
    t = SelfCheckingTarget(target_bin, tmp_path, env=env)
    with t:
        _step(t, 1)
        assert _pre_dump(t, tmp_path / "p1").returncode == 0
        _step(t, 2)
        r = crpy("dump", "-t", t.pid, "-D", tmp_path / "final", "--prev-images-dir", "../p1", "--track-mem")
        assert r.returncode == 0, r.stderr
        t.proc.wait(timeout=10)
        t.restore(tmp_path / "final")
        t.verdict(main_sleeps_in=None, want="FAIL")


def test_restore_checks_the_chain(target_bin, tmp_path):
    """A chain without its parent link, or with a damaged page image of an earlier round, is
    refused by the final restore in one line."""
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        _step(t, 1)
        assert _pre_dump(t, tmp_path / "p1").returncode == 0
        r = crpy("dump", "-t", t.pid, "-D", tmp_path / "final", "--prev-images-dir", "../p1", "--track-mem")
        assert r.returncode == 0, r.stderr
        t.proc.wait(timeout=10)
        os.rename(tmp_path / "final" / "parent", tmp_path / "parent.saved")
        r = crpy("restore", "-D", tmp_path / "final", "-d")
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "'parent' link" in r.stderr, r.stderr
        os.rename(tmp_path / "parent.saved", tmp_path / "final" / "parent")
        with open(tmp_path / "p1" / "pages-1.img", "r+b") as f:
            f.seek(100)
            f.write(b"\xff")
        r = crpy("restore", "-D", tmp_path / "final", "-d")
        assert r.returncode == 1 and "p1/pages-1.img" in r.stderr, r.stderr


@pytest.mark.parametrize("failing_round", [1, 2])
def test_failed_pre_dump_leaves_task_untracked(target_bin, tmp_path, failing_round):
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        fds = _settled_fds(t)
        if failing_round == 2:
            _step(t, 1)
            assert _pre_dump(t, tmp_path / "p1").returncode == 0
            assert _uffd_areas(t.pid)
        env = dict(os.environ, CRPY_FAULT="after-images")
        r = _pre_dump(t, tmp_path / "bad", "../p1" if failing_round == 2 else None, env=env)
        assert r.returncode == 1 and "fault point after-images" in r.stderr, r.stderr
        _check_untracked(t, fds)


def test_killed_pre_dump_leaves_task_untracked(target_bin, tmp_path):
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        fds = _settled_fds(t)
        _step(t, 1)
        assert _pre_dump(t, tmp_path / "p1").returncode == 0
        p = subprocess.Popen([sys.executable, "-m", "crpy", "pre-dump", "-t", str(t.pid), "-D", str(tmp_path / "p2"),
                              "--prev-images-dir", "../p1", "--track-mem"], cwd=ROOT, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, CRPY_FAULT="pause-in-pages"))
        try:
            assert p.stderr.readline().strip() == "crpy-fault: paused in pages"
        finally:
            p.kill()
            p.wait()
        _check_untracked(t, fds)


@pytest.mark.parametrize("mode", ["splice", "read"])
@pytest.mark.parametrize("how", ["fails", "killed"])
def test_pre_dump_ending_while_it_copies_leaves_task_untracked(target_bin, tmp_path, mode, how):
    """A round that fails, or is SIGKILLed, after the tree resumed and before its pages are
    copied leaves the task running, intact and untracked (its page references just go)."""
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        fds = _settled_fds(t)
        _step(t, 1)
        assert _pre_dump(t, tmp_path / "p1").returncode == 0
        argv = [sys.executable, "-m", "crpy", "pre-dump", "-t", str(t.pid), "-D", str(tmp_path / "p2"),
                "--prev-images-dir", "../p1", "--track-mem", "--pre-dump-mode", mode]
        fault = "pre-dump-copy:pause" if how == "killed" else "pre-dump-copy"
        p = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=dict(os.environ, CRPY_FAULT=fault))
        try:
            if how == "killed":
                assert p.stderr.readline().strip() == "crpy-fault: paused at pre-dump-copy"
                _step(t, 2)                # it runs while crpy holds its pages
                p.kill()
            else:
                assert p.wait(timeout=60) == 1 and "fault point pre-dump-copy" in p.stderr.read()
        finally:
            p.kill()
            p.wait()
        _check_untracked(t, fds)


def _check_untracked(t, fds):
    """No uffd-registered area, no holder, the fd table as before, and the task still works."""
    wait_for(lambda: not _uffd_areas(t.pid), timeout=10, what="the uffd registrations to go")
    wait_for(lambda: not _holder_alive(t.pid), timeout=10, what="the holder to end")
    wait_for(lambda: sorted(os.listdir(f"/proc/{t.pid}/fd")) == fds, timeout=10, what="the fd table as before")
    n = read_text(t.out).count("step ")
    _step(t, n + 1)
    os.kill(t.pid, signal.SIGTERM)
    wait_for(lambda: "PASS" in read_text(t.out) or "FAIL" in read_text(t.out), what="the verdict")
    assert "PASS" in read_text(t.out), read_text(t.out)


UFFD_USER = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    FILE *f = fopen(argv[1], "w");
    fprintf(f, fd >= 0 ? "ready\n" : "nouffd\n");
    fclose(f);
    for (;;) pause();
}
"""


def test_task_using_userfaultfd_is_refused(target_bin, tmp_path):
    exe = build_c(tmp_path, "uffd_user", UFFD_USER)
    with SelfCheckingTarget(exe, tmp_path) as t:
        # "ready" is written before fclose: the fd table is settled once the task sits in pause()
        wait_for(lambda: sleeps_in(t.pid, NR_PAUSE), what="the target to sit in pause()")
        fds = sorted(os.listdir(f"/proc/{t.pid}/fd"))
        r = _pre_dump(t, tmp_path / "p1")
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and f"pid {t.pid}" in r.stderr and "userfaultfd" in r.stderr, r.stderr
        assert sorted(os.listdir(f"/proc/{t.pid}/fd")) == fds and not _holder_alive(t.pid)
        # detached, it is running until it is back in its pause()
        wait_for(lambda: "State:\tS" in read_text(f"/proc/{t.pid}/status"), what="the refused task asleep again")


def test_range_arithmetic():
    from crpy.dump.memtrack import intersect, split_runs, subtract

    assert intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
    assert subtract([(0, 10), (20, 30)], [(2, 4), (8, 22)]) == [(0, 2), (4, 8), (22, 30)]
    own, parent = split_runs([(0, 10, 4, True), (20, 30, 6, True)], [(5, 25)])
    assert own == [(0, 5, 4, True), (25, 30, 6, True)]
    assert [(s, e) for s, e, _ in parent] == [(5, 10), (20, 25)]


def test_tree_chain(target_bin, tmp_path):
    """A tree: each task has its own tracking; all of them come back byte-exact."""
    from tests.unit.crhelpers import kill_quietly, start_target

    outs = [tmp_path / "o1", tmp_path / "o2"]
    root = start_target(["sh", "-c", f"{target_bin} {outs[0]} & {target_bin} {outs[1]} & wait"],
                        lambda: all("ready" in read_text(o) for o in outs), what="the tree")
    try:
        kids = [int(p) for p in read_text(f"/proc/{root.pid}/task/{root.pid}/children").split()]
        for n, prev in ((1, None), (2, "../p1")):
            for k in kids:
                os.kill(k, signal.SIGUSR1)
            wait_for(lambda: all(f"step {n}\n" in read_text(o) for o in outs), what=f"step {n}")
            args = ["pre-dump", "-t", root.pid, "-D", tmp_path / f"p{n}"] + (["--prev-images-dir", prev] if prev else [])
            r = crpy(*args)
            assert r.returncode == 0, r.stderr
        for k in kids:
            assert PE_PARENT in _pagemap_flags(tmp_path / "p2", k)
        r = crpy("dump", "-t", root.pid, "-D", tmp_path / "final", "--prev-images-dir", "../p2", "--track-mem")
        assert r.returncode == 0, r.stderr
        root.wait(timeout=10)
        r = crpy("restore", "-D", tmp_path / "final", "-d")
        assert r.returncode == 0, r.stderr
        for k in kids:
            os.kill(k, signal.SIGTERM)
        wait_for(lambda: all("PASS" in read_text(o) or "FAIL" in read_text(o) for o in outs), what="the verdicts")
        assert all(read_text(o).endswith("PASS\n") for o in outs), [read_text(o) for o in outs]
    finally:
        kill_quietly(root.pid)


def test_range_arithmetic_against_pages():
    """intersect/subtract/split_runs agree with the same sums done page by page."""
    import random

    from crpy.dump.memtrack import intersect, split_runs, subtract

    def ranges(rng, n):
        points = sorted(rng.sample(range(0, 400), 2 * n))
        return [(points[i], points[i + 1]) for i in range(0, 2 * n, 2)]

    def pages(rs):
        return {p for s, e in rs for p in range(s, e)}

    rng = random.Random(7)
    for _ in range(300):
        a, b = ranges(rng, rng.randint(1, 8)), ranges(rng, rng.randint(0, 8))
        assert pages(intersect(a, b)) == pages(a) & pages(b)
        assert pages(subtract(a, b)) == pages(a) - pages(b)
        own, parent = split_runs([(s, e, 4, True) for s, e in a], b)
        assert pages((s, e) for s, e, _, _ in own) == pages(a) - pages(b)
        assert pages((s, e) for s, e, _ in parent) == pages(a) & pages(b)


def test_plain_dump_of_a_tracked_task(target_bin, tmp_path):
    """A dump without --track-mem of a task a pre-dump still tracks saves its memory in full but
    not the write-protect markers of its unpopulated pages (no zero pages in the image)."""
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        _step(t, 1)
        assert _pre_dump(t, tmp_path / "p1").returncode == 0
        _step(t, 2)
        t.dump(tmp_path / "full")
        tracked = os.path.getsize(tmp_path / "p1" / "pages-1.img")
        assert os.path.getsize(tmp_path / "full" / "pages-1.img") < 1.5 * tracked
        wait_for(lambda: not _holder_alive(t.pid), what="the holder to end with the task")
        t.restore(tmp_path / "full")
        t.verdict(main_sleeps_in=None)


def test_pages_past_the_pipe_budget_are_read_after_the_resume(target_bin, tmp_path, monkeypatch):
    """--pre-dump-mode splice holds at most MAX_PIPES pipes of page references (here 1 of 64 KiB):
    the rest is read from the running task, and the chain still restores byte-exact.  In-process
    (crpy.api) so that the limits can be lowered."""
    import fcntl

    from crpy import api
    from crpy.dump import parasite, predump_pages

    monkeypatch.setattr(predump_pages, "MAX_PIPES", 1)
    monkeypatch.setattr(parasite, "_grow_pipe", lambda fd, nbytes=None: fcntl.fcntl(fd, parasite.F_SETPIPE_SZ, 64 << 10))
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        _step(t, 1)
        os.mkdir(tmp_path / "p1")
        stats = api.pre_dump(t.pid, str(tmp_path / "p1"))
        assert stats["pipe_bytes"] == 64 << 10 and stats["read_bytes"] > 0, stats
        _step(t, 2)
        r = crpy("dump", "-t", t.pid, "-D", tmp_path / "final", "--prev-images-dir", "../p1", "--track-mem",
                 "-v4", "-o", "dump.log")
        assert r.returncode == 0, r.stderr + log_tail(tmp_path / "final" / "dump.log")
        t.proc.wait(timeout=10)
        t.restore(tmp_path / "final")
        t.verdict(main_sleeps_in=None)


@pytest.mark.parametrize("mode", ["splice", "read"])
def test_pre_dump_modes_restore_byte_exact(target_bin, tmp_path, mode):
    """Both --pre-dump-mode's copy after the resume; a 2-round chain restores byte-exact."""
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        for i in (1, 2):
            _step(t, i)
            r = crpy("pre-dump", "-t", t.pid, "-D", tmp_path / f"p{i}", "-v4", "-o", "pd.log", "--pre-dump-mode", mode,
                     *(["--prev-images-dir", "../p1", "--track-mem"] if i == 2 else []))
            assert r.returncode == 0, r.stderr + log_tail(tmp_path / f"p{i}" / "pd.log")
            done = read_text(tmp_path / f"p{i}" / "pd.log")
            assert ("'pipe_bytes': 0" in done) == (mode == "read"), done[-400:]
        _step(t, 3)
        r = crpy("dump", "-t", t.pid, "-D", tmp_path / "final", "--prev-images-dir", "../p2", "--track-mem")
        assert r.returncode == 0, r.stderr
        t.proc.wait(timeout=10)
        t.restore(tmp_path / "final")
        t.verdict(main_sleeps_in=None)


def test_read_mode_after_unmap_and_mprotect_since_the_scan(tmp_path):
    """A page unmapped between the frozen scan and the read after the resume reads as zeros (its
    VMA is gone: no later round takes it from this one); one made PROT_NONE keeps its bytes (its
    tracking survives mprotect, so a later round may take it from this one)."""
    import ctypes
    import mmap

    from crpy.dump.predump_pages import _Reader

    area = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    area[:] = b"a" * 4096 + b"b" * 4096 + b"c" * 4096
    start = ctypes.addressof(ctypes.c_char.from_buffer(area))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.munmap(ctypes.c_void_p(start + 4096), 4096) == 0
    assert libc.mprotect(ctypes.c_void_p(start + 2 * 4096), 4096, 0) == 0     # PROT_NONE: still read
    out = os.open(tmp_path / "pages", os.O_RDWR | os.O_CREAT, 0o600)
    reader = _Reader(os.getpid())
    try:
        reader.copy(start, 3 * 4096, out)
        assert os.pread(out, 3 * 4096, 0) == b"a" * 4096 + bytes(4096) + b"c" * 4096
    finally:
        reader.close()
        os.close(out)


@pytest.fixture(scope="module")
def remap_bin(tmp_path_factory):
    if not _wp_async_available():
        pytest.skip("userfaultfd WP_ASYNC (Linux 6.7+) is not available: no pre-dump tracking")
    return build_c(tmp_path_factory.mktemp("remap"), "precopy_remap_target", HERE / "precopy_remap_target.c")


@pytest.mark.parametrize("mode", ["splice", "read"])
@pytest.mark.parametrize("broken", [False, True])
def test_pages_changing_shape_while_copied(remap_bin, tmp_path, mode, broken):
    """Areas unmapped and mapped again, flipped to PROT_NONE and back, zapped, without pause
    while 3 rounds copy after the resume: the chain restores what the last turn left (and a
    damaged page is seen: the target's check can fail)."""
    env = dict(os.environ, ZDTM_BREAK="1") if broken else None
    with SelfCheckingTarget(remap_bin, tmp_path, env=env) as t:
        for i in (1, 2, 3):
            r = crpy("pre-dump", "-t", t.pid, "-D", tmp_path / f"p{i}", "-v4", "-o", "pd.log", "--pre-dump-mode", mode,
                     *(["--prev-images-dir", f"../p{i - 1}", "--track-mem"] if i > 1 else []))
            assert r.returncode == 0, r.stderr + log_tail(tmp_path / f"p{i}" / "pd.log")
        r = crpy("dump", "-t", t.pid, "-D", tmp_path / "final", "--prev-images-dir", "../p3", "--track-mem")
        assert r.returncode == 0, r.stderr
        t.proc.wait(timeout=10)
        t.restore(tmp_path / "final")
        t.verdict(main_sleeps_in=None, want="FAIL" if broken else "PASS")
