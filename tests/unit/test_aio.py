"""AIO contexts (crpy.resources.aio): the io_setup argument that makes a ring of the same size
again, the ring header checks that refuse a ring crpy could not put back, a real dump of a task
holding two contexts as Debian's crit decodes it (mm.aios, the ring VMAs, their pages), and the
refusal of a request that completes while the task is frozen (in flight).  The restore itself
is tests/zdtm/aio_ring.c."""

import contextlib
import ctypes

import pytest

from crpy.errors import UnsupportedResource
from crpy.resources import aio

NR_IO_SETUP, NR_IO_DESTROY = 206, 207
VMA_AREA_AIORING = 1 << 13


@contextlib.contextmanager
def _holder(tmp_path, name, source):
    """Build and start a C holder `BINARY READY`; yields (proc, the words of its ready line)
    and kills it at the end."""
    from tests.unit.crhelpers import build_c, kill_quietly, read_text, start_target

    ready = tmp_path / "ready"
    proc = start_target([build_c(tmp_path, name, source), ready], lambda: read_text(ready).endswith("\n"),
                        what=f"the {name} holder")
    try:
        yield proc, read_text(ready).split()
    finally:
        kill_quietly(proc.pid)
        proc.wait()


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _ring_len(nr_events):
    """(address, bytes) of a fresh context of nr_events, made and destroyed here."""
    libc, ctx = _libc(), ctypes.c_ulong(0)
    if libc.syscall(NR_IO_SETUP, nr_events, ctypes.byref(ctx)):
        pytest.skip(f"io_setup({nr_events}) failed: errno {ctypes.get_errno()} (AIO not in this kernel?)")
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if lo == ctx.value:
                    return hi - lo
        raise AssertionError(f"no VMA at the context {ctx.value:#x}")
    finally:
        libc.syscall(NR_IO_DESTROY, ctx)


@pytest.mark.parametrize("nr_events", [1, 8, 100, 300, 1000, 5000])
def test_estimated_nr_req_makes_the_same_ring(nr_events):
    """CRIU's estimate, checked against this kernel: io_setup(estimate(len)) maps len again."""
    length = _ring_len(nr_events)
    assert aio.ring_len_here(nr_events) == length            # the kernel's sizing, as crpy computes it
    assert _ring_len(aio.estimate_nr_req(length)) == length


def _header(**over):
    h = dict(id=0, nr=127, head=0, tail=0, magic=aio.RING_MAGIC, compat=1, incompat=0, header_length=32)
    h.update(over)
    return h


def test_a_fresh_ring_passes():
    aio.check_ring(7, 0x10000, 0x11000, _header(head=5, tail=3))


@pytest.mark.parametrize("over, words", [
    (dict(magic=0), "header (magic 0x0)"),
    (dict(header_length=64), "header (magic"),
    (dict(nr=126), "126 events do not fill its 4096 bytes"),
    (dict(head=127), "head 127 or tail 0 outside its 127 events"),
    (dict(tail=200), "head 0 or tail 200"),
])
def test_a_ring_io_setup_would_not_make_is_refused(over, words):
    with pytest.raises(UnsupportedResource) as e:
        aio.check_ring(7, 0x10000, 0x11000, _header(**over))
    msg = e.value.one_line()
    assert "pid 7" in msg and "AIO context" in msg and "ring at 0x10000" in msg and words in msg, msg


def _mm(*rings):
    from crpy.images.pb import mm_pb2

    mm = mm_pb2.mm_entry()
    for addr, length, nr_req in rings:
        mm.aios.add(id=addr, ring_len=length, nr_req=nr_req)
    return mm


def _ring_areas(*spans):
    from crpy.restore.load import Area

    return [Area(s, e, 0, 3, 1, VMA_AREA_AIORING, 0, "aio") for s, e in spans]


def test_the_restore_takes_rings_that_match_their_vmas(tmp_path):
    length = aio.ring_len_here(8)
    rings = aio.load_rings(tmp_path / "mm-1.img", _mm((0x10000, length, 8)), _ring_areas((0x10000, 0x10000 + length)))
    assert rings == [(0x10000, length, 8)]


@pytest.mark.parametrize("mm, spans, words", [
    (_mm(), [(0x10000, 0x11000)], "the AIO ring VMA at 0x10000 has no aios entry"),
    (_mm((0x20000, 4096, 62)), [(0x10000, 0x11000)], "aios 0: ring at 0x20000"),
    (_mm((0x10000, 8192, 62)), [(0x10000, 0x11000)], "aios 0: ring at 0x10000 of 8192 bytes"),
])
def test_the_restore_refuses_aios_that_do_not_match(tmp_path, mm, spans, words):
    from crpy.errors import ImageError

    with pytest.raises(ImageError) as e:
        aio.load_rings(tmp_path / "mm-1.img", mm, _ring_areas(*spans))
    assert words in str(e.value)


def test_a_ring_this_machine_sizes_otherwise_is_refused_before_the_fork(tmp_path):
    """A ring saved where io_setup made it one page smaller (fewer CPUs): no new context could
    take its place at its address."""
    from crpy.errors import RestoreError

    nr_req = 20000
    length = aio.ring_len_here(nr_req) - 4096
    with pytest.raises(RestoreError) as e:
        aio.load_rings(tmp_path / "mm-1.img", _mm((0x10000, length, nr_req)),
                       _ring_areas((0x10000, 0x10000 + length)))
    assert "AIO context at 0x10000" in str(e.value) and "cannot be put back" in str(e.value)


_HOLDER = r"""
#include <linux/aio_abi.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    aio_context_t a = 0, b = 0;
    if (syscall(__NR_io_setup, 8, &a) || syscall(__NR_io_setup, 300, &b))
        return 1;
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%llx %llx\n", (unsigned long long)a, (unsigned long long)b);
    fclose(f);
    for (;;)
        pause();
}
"""


def test_crit_decodes_the_aio_rings_of_a_dump(tmp_path):
    """mm.aios holds (id = ring address, nr_req, ring_len) per context with CRIU's field
    numbers, the ring VMAs carry VMA_AREA_AIORING and their pages are in the pagemap."""
    from tests.unit.crhelpers import crpy, image_samples

    with _holder(tmp_path, "aio_holder", _HOLDER) as (proc, words):
        rings = [int(x, 16) for x in words]
        images = tmp_path / "img"
        res = crpy("dump", "-t", proc.pid, "-D", images, "-R")
        assert res.returncode == 0, res.stderr
    S = image_samples()
    mm, = S.crit_decode(images / f"mm-{proc.pid}.img")["entries"]
    got = {r["id"]: r for r in mm["aios"]}
    assert sorted(got) == sorted(rings)
    vmas = {v["start"]: v for v in mm["vmas"]}
    for addr in rings:
        v = vmas[addr]
        length = v["end"] - addr
        assert got[addr]["ring_len"] == length and got[addr]["nr_req"] == aio.estimate_nr_req(length)
        assert v["status"] == VMA_AREA_AIORING and v["flags"] == 1     # CRIU's: the status alone, MAP_SHARED
    pm = S.crit_decode(images / f"pagemap-{proc.pid}.img")["entries"][1:]
    runs = [(e["vaddr"], e["vaddr"] + 4096 * e["nr_pages"]) for e in pm]
    for addr in rings:                   # every page of each ring is saved
        assert any(lo <= addr and addr + got[addr]["ring_len"] <= hi for lo, hi in runs)


_POLLER = r"""
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    aio_context_t ctx = 0;
    struct iocb cb, *list[1] = { &cb };
    int p[2];                                       /* the test writes into p[1] */
    if (pipe(p) || syscall(__NR_io_setup, 8, &ctx))
        return 1;
    memset(&cb, 0, sizeof(cb));
    cb.aio_lio_opcode = IOCB_CMD_POLL;              /* pending until the pipe has data */
    cb.aio_fildes = p[0];
    cb.aio_buf = POLLIN;
    if (syscall(__NR_io_submit, ctx, 1, list) != 1)
        return 2;
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%llx %d\n", (unsigned long long)ctx, p[1]);
    fclose(f);
    for (;;)
        pause();
}
"""


def _ring_tail(pid, ctx):
    return aio.read_header(pid, ctx)["tail"]


def test_a_request_completing_during_the_dump_is_refused(tmp_path, monkeypatch):
    """An aio poll pending on a pipe completes while the task is frozen (the test writes the
    pipe right after the pages are saved): the dump is refused naming the ring and "AIO
    requests in flight", and the task runs on with the completion in its ring.  (A request that
    stays pending through the whole dump cannot be seen: see crpy.resources.aio.)"""
    import time

    from crpy import api
    from crpy.dump import pages
    from tests.unit.crhelpers import wait_for

    with _holder(tmp_path, "aio_poller", _POLLER) as (proc, (ctx, write_fd)):
        ctx, pipe_in = int(ctx, 16), f"/proc/{proc.pid}/fd/{write_fd}"
        assert _ring_tail(proc.pid, ctx) == 0
        real_dump_pages = pages.dump_pages

        def completing_one(*args, **kwargs):
            written = real_dump_pages(*args, **kwargs)
            with open(pipe_in, "wb", buffering=0) as w:
                w.write(b"x")
            wait_for(lambda: _ring_tail(proc.pid, ctx) == 1, timeout=5, what="the poll's completion")
            return written

        monkeypatch.setattr(pages, "dump_pages", completing_one)
        with pytest.raises(UnsupportedResource) as e:
            api.dump(proc.pid, str(tmp_path / "img"))
        msg = e.value.one_line()
        assert f"pid {proc.pid}" in msg and f"ring at {ctx:#x}" in msg and "AIO requests in flight" in msg, msg
        time.sleep(0.2)
        assert proc.poll() is None, "the refused task is gone"
        with open(f"/proc/{proc.pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
        assert "T" not in state.split()[1] and _ring_tail(proc.pid, ctx) == 1, state

_READ_ONLY_RING = r"""
#include <linux/aio_abi.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    aio_context_t ctx = 0;
    if (syscall(__NR_io_setup, 8, &ctx) || mprotect((void *)ctx, 4096, PROT_READ))
        return 1;
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%llx\n", (unsigned long long)ctx);
    fclose(f);
    for (;;)
        pause();
}
"""


def test_a_ring_mprotected_is_refused_and_left_alone(tmp_path):
    """The new ring comes read-write: a ring the program made read-only is refused by name."""
    from tests.unit.crhelpers import crpy

    with _holder(tmp_path, "aio_read_only", _READ_ONLY_RING) as (proc, (ctx,)):
        ctx = int(ctx, 16)
        res = crpy("dump", "-t", proc.pid, "-D", tmp_path / "img")
        assert res.returncode == 1 and proc.poll() is None, res.stderr
        line, = res.stderr.strip().splitlines()
        assert f"pid {proc.pid}" in line and f"ring at {ctx:#x} mprotect()ed to 0x1" in line, line


def test_a_failing_aio_step_of_the_restorer_is_reported_and_leaves_nothing(tmp_path):
    """CRPY_FAULT=restorer:aio: the blob fails at its aio step (after the go); the restore says
    so in one line and the task is gone; the same images then restore."""
    import os

    from tests.unit.crhelpers import crpy, kill_quietly

    with _holder(tmp_path, "aio_holder", _HOLDER) as (proc, _):
        images = tmp_path / "img"
        res = crpy("dump", "-t", proc.pid, "-D", images)
        assert res.returncode == 0, res.stderr
        proc.wait(timeout=10)
    res = crpy("restore", "-D", images, "-d", env={**os.environ, "CRPY_FAULT": "restorer:aio"})
    line, = res.stderr.strip().splitlines()
    assert res.returncode == 1 and "restorer step aio failed" in line, res.stderr
    assert not os.path.exists(f"/proc/{proc.pid}"), "the failed task is left"
    res = crpy("restore", "-D", images, "-d")
    try:
        assert res.returncode == 0, res.stderr
        with open(f"/proc/{proc.pid}/maps") as f:
            assert "/[aio]" in f.read()
    finally:
        kill_quietly(proc.pid)
