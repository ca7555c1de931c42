"""The inline page check (crpy.restore.pagecheck, crpy.kernel.crc32c.pread_crc/combine): which
task checks which chunks, reading pages into place hashed as they land, and damage found."""

import ctypes
import mmap
import os
from types import SimpleNamespace

import pytest

from crpy.errors import ImageError
from crpy.images import digest
from crpy.images.pages import is_pages_image
from crpy.kernel import crc32c
from crpy.restore import pagecheck

MIB = 1 << 20
SIZE = 3 * MIB + MIB // 2            # the last chunk is half a chunk


def _task(*reads, path):
    runs = [(0, n, path, off) for off, n in reads]
    return SimpleNamespace(task=SimpleNamespace(areas=[SimpleNamespace(lazy=False, runs=runs)], page_checks=None))


@pytest.fixture
def images(tmp_path):
    data = os.urandom(SIZE)
    (tmp_path / "pages-1.img").write_bytes(data)
    digest.write_digests(tmp_path)
    return tmp_path, data


def test_combine_is_the_digest_of_the_concatenation():
    for a_len, b_len in ((0, 0), (1, 0), (0, 5), (4096, 777), (MIB, 3 * 4096 + 5)):
        a, b = os.urandom(a_len), os.urandom(b_len)
        assert crc32c.combine(crc32c.crc32c(a), crc32c.crc32c(b), b_len) == crc32c.crc32c(a + b)


def test_pread_crc_reads_into_place_and_hashes_each_part(tmp_path):
    data = os.urandom(4 * MIB)
    (tmp_path / "f").write_bytes(data)
    buf = mmap.mmap(-1, 4 * MIB)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    # 300 single pages (more iovecs than one piece holds), then one big buffer
    iovs = [(base + i * 4096, 4096) for i in range(300)] + [(base + 300 * 4096, MIB + 123)]
    offset = MIB - 5000
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        crcs = crc32c.pread_crc(fd, iovs, offset, MIB)
    finally:
        os.close(fd)
    total = sum(n for _, n in iovs)
    assert buf[:total] == data[offset:offset + total]
    cuts = [offset] + [k * MIB for k in range(1, 5) if offset < k * MIB < offset + total] + [offset + total]
    assert crcs == [crc32c.crc32c(data[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]


def test_pread_crc_past_the_end_is_an_error(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 4096)
    buf = mmap.mmap(-1, 8192)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            crc32c.pread_crc(fd, [(ctypes.addressof(ctypes.c_char.from_buffer(buf)), 8192)], 0, MIB)
    finally:
        os.close(fd)


def test_each_chunk_goes_to_the_first_task_that_reads_it_whole(images):
    d, _ = images
    path = str(d / "pages-1.img")
    a = _task((0, 2 * MIB + MIB // 2), path=path)                 # chunks 0, 1 (and part of 2)
    b = _task((2 * MIB, MIB), (3 * MIB, MIB // 2), path=path)     # chunk 2, and the half chunk 3
    c = _task((0, MIB), path=path)                                # chunk 0: already a's
    hole = _task((MIB + 4096, 4096), path=path)                   # no chunk whole
    planned = pagecheck.plan([a, b, c, hole, SimpleNamespace(task=None)], [str(d)])
    assert planned == {os.path.realpath(path): {0, 1, 2, 3}}
    assert sorted(a.task.page_checks[path][2]) == [0, 1]
    assert sorted(b.task.page_checks[path][2]) == [2, 3]
    assert c.task.page_checks is None and hole.task.page_checks is None


def test_covered_chunks_are_worked_out_as_a_loop_would_find_them():
    import random

    rng = random.Random(7)
    for _ in range(2000):
        chunk, size = rng.choice((4096, 3 * 4096)), rng.randrange(1, 40000)
        cuts = sorted(rng.sample(range(size + 5000), 2 * rng.randrange(1, 4)))
        merged = pagecheck._merged([(a, b - a) for a, b in zip(cuts[::2], cuts[1::2])])
        by_loop = [i for start, end in merged for i in range(-(-size // chunk))
                   if i * chunk >= start and min((i + 1) * chunk, size) <= end]
        worked_out = [i for lo, hi in pagecheck._covered(merged, chunk, size) for i in range(lo, hi)]
        assert worked_out == by_loop, (chunk, size, merged)


def test_no_plan_without_digests_or_with_another_hash(tmp_path):
    (tmp_path / "pages-1.img").write_bytes(os.urandom(MIB))
    t = _task((0, MIB), path=str(tmp_path / "pages-1.img"))
    assert pagecheck.plan([t], [str(tmp_path)]) == {}
    digest.Recorder(tmp_path, algo="crc32").write()
    assert pagecheck.plan([t], [str(tmp_path)]) == {} and t.task.page_checks is None


def _read_as_premap(path, reads, chunk_size, parts):
    """Read each (offset, length) into a buffer as premap does; return the buffers."""
    bufs = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, n in reads:
            buf = mmap.mmap(-1, n)
            crcs = crc32c.pread_crc(fd, [(ctypes.addressof(ctypes.c_char.from_buffer(buf)), n)], off, chunk_size)
            parts.add(path, off, n, chunk_size, crcs)
            bufs.append(buf)
    finally:
        os.close(fd)
    return bufs


def test_intact_reads_verify_in_pieces_of_any_alignment(images):
    d, _ = images
    path = str(d / "pages-1.img")
    reads = [(0, 12345), (12345, MIB), (MIB + 12345, SIZE - MIB - 12345)]
    t = _task(*reads, path=path)
    pagecheck.plan([t], [str(d)])
    parts = pagecheck.Parts()
    _read_as_premap(path, reads, MIB, parts)
    pagecheck.verify(t.task.page_checks, parts)


def test_damage_read_by_a_task_is_one_line_naming_the_range(images):
    d, data = images
    path = str(d / "pages-1.img")
    t = _task((0, SIZE), path=path)
    pagecheck.plan([t], [str(d)])
    with open(path, "r+b") as f:                                  # damaged after the plan
        f.seek(MIB + 100)
        f.write(bytes([data[MIB + 100] ^ 1]))
    parts = pagecheck.Parts()
    _read_as_premap(path, [(0, SIZE)], MIB, parts)
    with pytest.raises(ImageError) as e:
        pagecheck.verify(t.task.page_checks, parts)
    line = e.value.one_line()
    assert "pages-1.img" in line and "bytes [0x100000, 0x200000) differ" in line and "--skip-integrity" in line
    assert "\n" not in line


def test_a_planned_chunk_not_read_as_planned_is_hashed_from_the_file(images):
    d, _ = images
    path = str(d / "pages-1.img")
    t = _task((0, MIB), path=path)
    pagecheck.plan([t], [str(d)])
    pagecheck.verify(t.task.page_checks, pagecheck.Parts())      # nothing read: the file is


def test_the_pre_fork_check_skips_the_planned_chunks_only(images):
    d, data = images
    path = d / "pages-1.img"
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(bytes([data[100] ^ 1]))                            # chunk 0
    real = os.path.realpath(path)
    assert digest.damaged_images(d, is_pages_image, {real: {0}}) == []
    errors = digest.damaged_images(d, is_pages_image, {real: {1, 2, 3}})
    assert len(errors) == 1 and "bytes [0x0, 0x100000)" in str(errors[0])
    with open(path, "ab") as f:                                    # sizes: always checked
        f.write(b"x")
    assert "bytes" in str(digest.damaged_images(d, is_pages_image, {real: {0, 1, 2, 3}})[0])


def test_a_big_fill_is_read_by_threads_in_turn_and_checked(tmp_path):
    """A fill over premap's threshold is read by FILL_THREADS threads taking its batches in
    turn: every byte lands in place, and a damaged chunk in one thread's batch is refused."""
    from crpy.restore import premap

    size = premap._PARALLEL_MIN + 3 * MIB + 4096
    data = bytearray(os.urandom(size))
    path = tmp_path / "pages-1.img"
    path.write_bytes(data)
    digest.write_digests(tmp_path)
    buf = mmap.mmap(-1, size)
    area = SimpleNamespace(lazy=False, kind="anon", runs=[(0, size, str(path), 0)])
    node = SimpleNamespace(task=SimpleNamespace(areas=[area], page_checks=None))
    pagecheck.plan([node], [str(tmp_path)])
    slots = [SimpleNamespace(area=area, addr=ctypes.addressof(ctypes.c_char.from_buffer(buf)))]
    try:
        assert premap.fill(slots, node.task.page_checks) == size
        assert buf[:] == data
        with open(path, "r+b") as f:                  # a byte of chunk 50, in a later batch
            f.seek(50 * MIB + 77)
            f.write(bytes([data[50 * MIB + 77] ^ 0x10]))
        with pytest.raises(ImageError) as e:
            premap.fill(slots, node.task.page_checks)
    finally:
        premap.close_pages()
    assert f"bytes [{50 * MIB:#x}, {51 * MIB:#x}) differ" in e.value.one_line()


def test_an_image_whose_chunks_all_go_to_the_tasks_is_still_looked_for(images):
    """Every chunk planned: the pre-fork check only looks at its size, and that it is there."""
    d, _ = images
    path = d / "pages-1.img"
    real = os.path.realpath(path)
    all_chunks = {real: {0, 1, 2, 3}}
    assert digest.damaged_images(d, is_pages_image, all_chunks) == []
    os.truncate(path, SIZE - 4096)
    (error,) = digest.damaged_images(d, is_pages_image, all_chunks)
    assert "missing (truncated)" in str(error), error
    os.unlink(path)
    (error,) = digest.damaged_images(d, is_pages_image, all_chunks)
    assert "image is missing" in str(error), error
