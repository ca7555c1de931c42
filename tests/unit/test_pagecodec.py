"""The compressed page image layout (crpy.images.pagecodec): a raw pages image compressed in
place decodes to exactly the same bytes (compressible, incompressible and zero blocks, a short
last block), the pagemap head names the codec in a field crit ignores, and every kind of damage
to a compressed image is refused with the image's path and the offset of the damaged block."""

import os
import struct

import pytest

from crpy.errors import ImageError
from crpy.images import pagecodec

BLOCK = pagecodec.BLOCK_SIZE


def _raw_pages():
    """3.5 blocks: text, random (stored as is), zeros, and a short tail of text."""
    text = b"".join(b"line %d of some page text\n" % i for i in range(100000))[:BLOCK]
    return text + os.urandom(BLOCK) + bytes(BLOCK) + text[:BLOCK // 2]


@pytest.fixture
def compressed(tmp_path):
    raw = _raw_pages()
    path = tmp_path / "pages-1.img"
    path.write_bytes(raw)
    r, stored = pagecodec.compress_file(str(path))
    assert r == len(raw) and stored == os.path.getsize(path)
    return path, raw


def _decoded(path):
    fd = os.memfd_create("t")
    try:
        n = pagecodec.decode_into(str(path), fd)
        return os.pread(fd, n + 1, 0)
    finally:
        os.close(fd)


def _blocks(path):
    """[(file offset, raw length, stored length field)] of a compressed image."""
    data, pos, out = path.read_bytes(), 16, []
    while pos < len(data):
        raw_len, stored = struct.unpack_from("<II", data, pos)
        out.append((pos, raw_len, stored))
        pos += 8 + (stored & ~pagecodec.STORED)
    return out


def test_round_trip_is_byte_exact(compressed):
    path, raw = compressed
    data = path.read_bytes()
    assert data.startswith(pagecodec.MAGIC) and len(data) < len(raw) * 0.6
    blocks = _blocks(path)
    assert [b[1] for b in blocks] == [BLOCK, BLOCK, BLOCK, BLOCK // 2]
    assert blocks[1][2] & pagecodec.STORED and not blocks[0][2] & pagecodec.STORED   # random: kept as is
    assert _decoded(path) == raw
    assert not os.path.exists(str(path) + ".compressing")


def test_empty_image(tmp_path):
    path = tmp_path / "pages-2.img"
    path.write_bytes(b"")
    assert pagecodec.compress_file(str(path)) == (0, 16)
    assert _decoded(path) == b""


def test_raw_path_of_a_raw_and_of_a_compressed_image(compressed):
    from crpy.images.pb import pagemap_pb2

    path, raw = compressed
    plain = pagemap_pb2.pagemap_head(pages_id=1)
    assert pagecodec.raw_path(str(path), plain) == str(path)
    head = pagemap_pb2.pagemap_head(pages_id=1, crpy_codec=pagecodec.CODEC_LZ4)
    try:
        where = pagecodec.raw_path(str(path), head)
        assert where.startswith(f"/proc/{os.getpid()}/fd/")
        assert pagecodec.raw_path(str(path), head) == where          # decoded once
        with open(where, "rb") as f:
            assert f.read() == raw
        assert pagecodec.image_of(where) == os.path.realpath(path) and pagecodec.image_of("x") == "x"
    finally:
        pagecodec.release()
    head.crpy_codec = 7
    with pytest.raises(ImageError, match="unknown page codec 7"):
        pagecodec.raw_path(str(path), head)


def test_show_says_codec_and_raw_size(compressed, tmp_path):
    from crpy.images import show

    path, raw = compressed
    shown = show.decode_file(str(path))
    assert shown["codec"] == "lz4" and shown["raw_size"] == len(raw) and shown["pages"] == len(raw) // 4096
    assert shown["size"] == os.path.getsize(path)
    plain = tmp_path / "pages-9.img"
    plain.write_bytes(bytes(8192))
    assert "codec" not in show.decode_file(str(plain)) and show.decode_file(str(plain))["pages"] == 2


def test_crit_ignores_the_codec_field(tmp_path):
    import shutil
    import subprocess

    from crpy.images import framing
    from crpy.images.pb import pagemap_pb2

    crit = shutil.which("crit")
    if crit is None:
        pytest.skip("crit (Debian package criu) is not installed")
    path = str(tmp_path / "pagemap-1.img")
    framing.write_image(path, "pagemap", [pagemap_pb2.pagemap_head(pages_id=3, crpy_codec=1),
                                          framing.new_pagemap_entry(0x10000, 2, 4)])
    out = subprocess.run([crit, "decode", "-i", path], capture_output=True, text=True, check=True).stdout
    assert '"pages_id": 3' in out and '"nr_pages": 2' in out and "crpy_codec" not in out


def _refused(path):
    with pytest.raises(ImageError) as e:
        _decoded(path)
    return e.value


@pytest.mark.parametrize("where", ["payload", "raw_len", "stored_len"])
def test_a_damaged_block_is_refused_with_its_offset(compressed, where):
    path, _ = compressed
    at, _, _ = _blocks(path)[0]                  # the compressed text block
    data = bytearray(path.read_bytes())
    if where == "payload":                       # lz4 sees a bad match offset or length
        data[at + 8:at + 40] = b"\xff" * 32
    elif where == "raw_len":
        data[at:at + 4] = struct.pack("<I", BLOCK + 1)
    else:
        data[at + 4:at + 8] = struct.pack("<I", 0x7fffffff)
    path.write_bytes(bytes(data))
    err = _refused(path)
    assert err.path == str(path) and err.offset == at, str(err)
    assert f"{path} at offset {at}:" in str(err)


def test_a_cut_image_and_a_raw_image_are_refused(compressed):
    path, raw = compressed
    last = _blocks(path)[-1][0]
    with open(path, "r+b") as f:
        f.truncate(last + 20)
    err = _refused(path)
    assert err.offset == last and "cut short" in str(err)
    path.write_bytes(raw)                        # the pagemap says compressed, the file is raw
    err = _refused(path)
    assert err.offset == 0 and "not a compressed pages image" in str(err)
