"""premap.fill: the restore's page reads (preadv straight into place, anonymous memory populated
a piece at a time right before its read, a big fill in two threads) put every byte of
pages-N.img where the runs say, and touch nothing else: checked in this process over anonymous
mappings, with and without threads."""

import ctypes
import mmap
import os
import types

import pytest

from crpy.restore import premap

PAGE = 4096


def _slot(addr, kind, runs):
    return types.SimpleNamespace(addr=addr, area=types.SimpleNamespace(kind=kind, runs=runs, lazy=False))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fill_puts_every_run_in_place(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(premap, "FILL_THREADS", threads)
    monkeypatch.setattr(premap, "_PARALLEL_MIN", 0)
    monkeypatch.setattr(premap, "CHUNK", 8 * PAGE)            # many batches, runs cut in pieces
    data = os.urandom(64 * PAGE)
    path = str(tmp_path / "pages-1.img")
    with open(path, "wb") as f:
        f.write(data)
    areas = [mmap.mmap(-1, 40 * PAGE), mmap.mmap(-1, 40 * PAGE)]
    addrs = [ctypes.addressof(ctypes.c_char.from_buffer(m)) for m in areas]
    try:
        # file order differs from address order; a gap stays zero; one run in a "file" kind
        slots = [_slot(addrs[0], "anon", [(2 * PAGE, 20 * PAGE, path, 30 * PAGE),
                                          (30 * PAGE, 10 * PAGE, path, 0)]),
                 _slot(addrs[1], "file_private", [(0, 20 * PAGE, path, 10 * PAGE)]),
                 _slot(addrs[1] + 20 * PAGE, "anon_shared", [(PAGE, 14 * PAGE, path, 50 * PAGE)])]
        assert premap.fill(slots) == 64 * PAGE
        want0 = bytes(2 * PAGE) + data[30 * PAGE:50 * PAGE] + bytes(8 * PAGE) + data[:10 * PAGE]
        want1 = data[10 * PAGE:30 * PAGE] + bytes(PAGE) + data[50 * PAGE:64 * PAGE] + bytes(5 * PAGE)
        assert areas[0][:] == want0
        assert areas[1][:] == want1
    finally:
        premap.close_pages()
        del addrs
        for m in areas:
            m.close()


def test_fill_error_in_a_helper_thread_is_raised(tmp_path, monkeypatch):
    """A short pages file: the thread reading the end fails, and fill() says so."""
    monkeypatch.setattr(premap, "_PARALLEL_MIN", 0)
    monkeypatch.setattr(premap, "CHUNK", 4 * PAGE)
    path = str(tmp_path / "pages-1.img")
    with open(path, "wb") as f:
        f.write(bytes(10 * PAGE))
    area = mmap.mmap(-1, 16 * PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(area))
    try:
        with pytest.raises(premap.RestoreError, match="short read"):
            premap.fill([_slot(addr, "anon", [(0, 16 * PAGE, path, 0)])])
    finally:
        premap.close_pages()
        del addr
        area.close()
