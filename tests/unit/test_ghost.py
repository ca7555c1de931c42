"""Ghost files (crpy.resources.ghost) without a process: what the dump writes for an unlinked
file and what the restore makes of it, plus the --ghost-limit size argument."""

import os
import stat
import time
import types

import pytest

from crpy.cli import _size
from crpy.images import framing
from crpy.resources import ghost, ghost_make


def _dump(path, images):
    """ghost-file-1.img of the file at `path`, as the dump writes it; its entries."""
    files = types.SimpleNamespace(images_dir=str(images))
    ghost._dump_ghost(str(path), os.stat(path), 1, files)
    return framing.read_payload_image(framing.image_path(str(images), "ghost_file", 1), "ghost_file")


def _extents(fd):
    out, pos, size = [], 0, os.fstat(fd).st_size
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        pos = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, pos))
    return out


def test_a_sparse_gib_is_dumped_as_its_data_chunks_and_comes_back_sparse(tmp_path):
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate((1 << 30) + 5)
        f.seek(0)
        f.write(b"a" * 8192)
        f.seek(700 << 20)
        f.write(b"b" * 4096)
    images = tmp_path / "images"
    images.mkdir()
    t0 = time.monotonic()
    items = _dump(src, images)
    assert time.monotonic() - t0 < 5
    head = items[0][0]
    assert head.chunks and head.size == (1 << 30) + 5
    assert [(c.off, c.len) for c, _ in items[1:]] == [(0, 8192), (700 << 20, 4096)]
    assert os.path.getsize(framing.image_path(str(images), "ghost_file", 1)) < 16384
    made = ghost_make.create(items, str(tmp_path / "again"))
    try:
        fd = os.open(made, os.O_RDONLY)
        assert os.fstat(fd).st_size == (1 << 30) + 5
        assert _extents(fd) == _extents(os.open(src, os.O_RDONLY)) == [(0, 8192), (700 << 20, (700 << 20) + 4096)]
        assert os.pread(fd, 4096, 700 << 20) == b"b" * 4096
    finally:
        ghost.unlink_materialized()
    assert not os.path.exists(made)


def test_a_small_file_goes_whole_after_the_head(tmp_path):
    src = tmp_path / "small"
    src.write_bytes(b"hello")
    images = tmp_path / "images"
    images.mkdir()
    (head, data), = _dump(src, images)
    assert not head.chunks and head.size == 5 and data == b"hello"


@pytest.mark.parametrize("mode", [0o6755, 0o2710, 0o4700])
def test_set_id_bits_survive_the_owner_and_the_data(tmp_path, mode):
    src = tmp_path / "suid"
    src.write_bytes(b"x" * 20000)
    os.chown(src, 4321, 4322)
    os.chmod(src, mode)
    images = tmp_path / "images"
    images.mkdir()
    made = ghost_make.create(_dump(src, images), str(tmp_path / "again"))
    try:
        st = os.stat(made)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 4321, 4322)
    finally:
        ghost.unlink_materialized()


def test_ghost_limit_sizes_read_as_criu_reads_them():
    assert [_size(s) for s in ("4096", "1K", "1M", "2G", "3g")] == [4096, 1024, 1 << 20, 2 << 30, 3 << 30]
    with pytest.raises(Exception):
        _size("lots")
