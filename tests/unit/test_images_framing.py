"""Framing of crpy images: round trips of every kind, and every defect named by file and offset."""

import os
import struct

import pytest

from crpy.errors import ImageError
from crpy.images import framing, magic
from tests.unit.crhelpers import image_samples


@pytest.fixture()
def images(tmp_path):
    """tmp_path with every sample image written; returns (dir, {kind: path})."""
    return tmp_path, image_samples().write_all(tmp_path)


def _error(path, kind=None):
    with pytest.raises(ImageError) as info:
        framing.read_image(path, kind)
    err = info.value
    assert err.path == str(path) or err.path == path
    assert str(path) in err.one_line()
    assert err.hint, "every image error carries a hint"
    return err


# ------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("kind", sorted(k for k, v in magic.KINDS.items() if v.magic is not None))
def test_round_trip_every_kind(tmp_path, kind):
    entries = image_samples().samples()[kind]
    k = magic.kind(kind)
    path = framing.image_path(tmp_path, kind, 7 if "{id" in k.pattern else None)
    if k.payload:
        framing.write_payload_image(path, kind, entries)
        back = framing.read_payload_image(path, kind)
        assert [(m.SerializeToString(), d) for m, d in back] == \
            [(m.SerializeToString(), bytes(d)) for m, d in entries]
        assert all(framing.payload_length(k, m) == len(d) for m, d in back[1 if k.head else 0:])
    else:
        size = framing.write_image(path, kind, entries)
        assert size == os.path.getsize(path)
        back = framing.read_image(path, kind)
        assert back == entries
        assert framing.read_image(path) == entries  # kind found from the magic
    with open(path, "rb") as f:
        first = struct.unpack("<I", f.read(4))[0]
    assert first == (k.header if k.header is not None else k.magic)


def test_file_names_are_criu_names(tmp_path):
    names = {kind: os.path.basename(framing.image_path(tmp_path, kind, 12))
             for kind in ("core", "mm", "pagemap", "pages", "fdinfo", "fs", "ids", "timens")}
    assert names == {"core": "core-12.img", "mm": "mm-12.img", "pagemap": "pagemap-12.img",
                     "pages": "pages-12.img", "fdinfo": "fdinfo-12.img", "fs": "fs-12.img",
                     "ids": "ids-12.img", "timens": "timens-12.img"}
    for kind, name in (("inventory", "inventory.img"), ("pstree", "pstree.img"), ("files", "files.img"),
                       ("pipes_data", "pipes-data.img"), ("memfd_inode", "memfd.img")):
        assert os.path.basename(framing.image_path(tmp_path, kind)) == name
    assert os.path.basename(framing.image_path(tmp_path, "stats", "dump")) == "stats-dump"
    with pytest.raises(ValueError):
        framing.image_path(tmp_path, "core")


def test_pagemap_head_first_and_64bit_count(tmp_path):
    path = framing.image_path(tmp_path, "pagemap", 1)
    head = framing.message_class("pagemap_pb2.pagemap_head")(pages_id=3)
    big = framing.new_pagemap_entry(0x7F0000000000, 1 << 33, 6)  # 32 TiB: only field 5 holds it
    framing.write_image(path, "pagemap", [head, big, framing.new_pagemap_entry(0x1000, 5, 4)])
    got = framing.read_image(path, "pagemap")
    assert got[0].DESCRIPTOR.name == "pagemap_head" and got[0].pages_id == 3
    assert [framing.pagemap_nr_pages(e) for e in got[1:]] == [1 << 33, 5]
    assert got[1].compat_nr_pages == 0 and got[2].compat_nr_pages == 5


def test_pagemap_old_style_count_is_read():
    old = framing.message_class("pagemap_pb2.pagemap_entry")(vaddr=0x1000, compat_nr_pages=9, flags=4)
    assert framing.pagemap_nr_pages(old) == 9


def test_read_one(images):
    _, paths = images
    assert framing.read_one(paths["mm"], "mm").exe_file_id == 1
    err = pytest.raises(ImageError, framing.read_one, paths["fdinfo"], "fdinfo").value
    assert "exactly one entry" in str(err)


def test_write_missing_required_field_is_an_image_error(tmp_path):
    path = tmp_path / "pstree.img"
    bad = framing.message_class("pstree_pb2.pstree_entry")(pid=1)
    err = pytest.raises(ImageError, framing.write_image, str(path), "pstree", [bad]).value
    assert "entry 0" in str(err) and "ppid" in str(err)


# ----------------------------------------------------------------------------------- defects

def test_missing_file(tmp_path):
    err = _error(tmp_path / "core-1.img", "core")
    assert "missing" in str(err)


def test_empty_file(tmp_path):
    path = tmp_path / "core-1.img"
    path.write_bytes(b"")
    err = _error(path, "core")
    assert "empty" in str(err) and err.offset == 0


def test_bad_header_magic(images):
    _, paths = images
    data = bytearray(open(paths["core"], "rb").read())
    data[0:4] = struct.pack("<I", 0xDEADBEEF)
    open(paths["core"], "wb").write(data)
    err = _error(paths["core"], "core")
    assert "bad header magic 0xdeadbeef" in str(err) and err.offset == 0


def test_raw_pages_are_not_framed(tmp_path):
    path = framing.image_path(tmp_path, "pages", 1)
    open(path, "wb").write(bytes(range(256)) * 16)
    err = _error(path)
    assert "header magic" in str(err) and "pages" in err.hint


def test_wrong_type_magic_says_what_it_is(images):
    _, paths = images
    err = _error(paths["fdinfo"], "core")
    assert "wrong type magic" in str(err) and "fdinfo image" in str(err) and err.offset == 4
    err = _error(paths["inventory"], "core")  # no header: type magic at offset 0
    assert "inventory image" in str(err) and err.offset == 0


def test_unknown_criu_kind(tmp_path):
    path = tmp_path / "ipc-var.img"
    path.write_bytes(struct.pack("<II", magic.HEADER_COMMON, 0x53115007) + struct.pack("<I", 0))
    err = _error(path)
    assert "IPC_VAR" in str(err) and err.offset == 4 and isinstance(err, framing.UnknownImageKind)


def test_header_of_another_family(images):
    _, paths = images
    data = bytearray(open(paths["stats"], "rb").read())
    data[0:4] = struct.pack("<I", magic.HEADER_COMMON)  # stats must carry the service header
    open(paths["stats"], "wb").write(data)
    err = _error(paths["stats"], "stats")
    assert "header magic" in str(err) and err.offset == 0


def test_truncated_size_word(images):
    _, paths = images
    data = open(paths["fs"], "rb").read()
    open(paths["fs"], "wb").write(data + b"\x05\x00")  # half a size word after the last entry
    err = _error(paths["fs"], "fs")
    assert "truncated size of entry 1" in str(err) and err.offset == len(data)


def test_truncated_magic(tmp_path):
    path = tmp_path / "core-1.img"
    path.write_bytes(struct.pack("<I", magic.HEADER_COMMON) + b"\x47\x38")
    err = _error(path, "core")
    assert "truncated type magic" in str(err) and err.offset == 4


def test_truncated_payload(images):
    _, paths = images
    data = open(paths["mm"], "rb").read()
    open(paths["mm"], "wb").write(data[:-10])
    err = _error(paths["mm"], "mm")
    size = struct.unpack_from("<I", data, 8)[0]
    assert f"entry 0 needs {size} bytes, only {size - 10} left" in str(err) and err.offset == 12


def test_truncated_pipe_data(images):
    _, paths = images
    data = open(paths["pipes_data"], "rb").read()
    open(paths["pipes_data"], "wb").write(data[:-3])
    err = _error(paths["pipes_data"], "pipes_data")
    assert "payload of entry 0 needs 9 bytes, only 6 left" in str(err)
    assert err.offset == len(data) - 9


def test_garbage_payload(images):
    _, paths = images
    data = bytearray(open(paths["core"], "rb").read())
    size = struct.unpack_from("<I", data, 8)[0]
    data[12:12 + size] = b"\xff" * size
    open(paths["core"], "wb").write(data)
    err = _error(paths["core"], "core")
    assert "entry 0 is not a valid core_entry" in str(err) and err.offset == 12


def test_missing_required_field_on_read(tmp_path):
    path = tmp_path / "pstree.img"
    body = framing.message_class("pstree_pb2.pstree_entry")(pid=5).SerializePartialToString()
    path.write_bytes(struct.pack("<III", magic.HEADER_COMMON, magic.kind("pstree").magic, len(body)) + body)
    err = _error(path, "pstree")
    assert "lacks required fields" in str(err) and "ppid" in str(err) and err.offset == 12


def test_unsupported_inventory_version(tmp_path):
    inv = framing.message_class("inventory_pb2.inventory_entry")(img_version=1, fdinfo_per_id=True)
    path = framing.image_path(tmp_path, "inventory")
    framing.write_image(path, "inventory", [inv])
    err = _error(path, "inventory")
    assert "unsupported image version 1" in str(err) and err.offset is not None


def test_directory_is_not_an_image(tmp_path):
    err = pytest.raises(ImageError, framing.read_image, str(tmp_path), "core").value
    assert str(tmp_path) in str(err)


def test_write_into_missing_directory(tmp_path):
    path = framing.image_path(tmp_path / "nope", "fs", 1)
    entry = image_samples().samples()["fs"][0]
    err = pytest.raises(ImageError, framing.write_image, path, "fs", [entry]).value
    assert path in str(err) and "cannot create image" in str(err) and err.hint


def test_show_directory_skips_logs_and_reports_undecodable(tmp_path):
    import io
    import json

    from crpy.images import show

    image_samples().write_all(tmp_path)
    (tmp_path / "dump.log").write_text("not an image\n")
    (tmp_path / "ipc-var.img").write_bytes(struct.pack("<III", magic.HEADER_COMMON, 0x53115007, 0))
    out = io.StringIO()
    assert show.show([str(tmp_path)], out=out) == 0
    doc = {os.path.basename(k): v for k, v in json.loads(out.getvalue()).items()}
    assert "dump.log" not in doc and doc["ipc-var.img"]["magic"] == "UNKNOWN"
    assert doc["core-4242.img"]["magic"] == "CORE"
    assert doc["pagemap-4242.img"]["entries"][1]["nr_pages"] == 1


def test_unknown_type_magic_after_a_good_header(tmp_path):
    path = tmp_path / "x.img"
    path.write_bytes(struct.pack("<II", magic.HEADER_COMMON, 0x12345678))
    err = _error(path)
    assert "unknown type magic 0x12345678" in str(err) and err.offset == 4
    assert not isinstance(err, framing.UnknownImageKind)


def test_ghost_file_raw_tail(tmp_path):
    path = framing.image_path(tmp_path, "ghost_file", 0x1F)
    assert os.path.basename(path) == "ghost-file-1f.img"
    head = framing.message_class("ghost_file_pb2.ghost_file_entry")(uid=1, gid=2, mode=0o100644, size=70000)
    data = bytes(range(256)) * 273 + b"end"
    framing.write_payload_image(path, "ghost_file", [(head, data)])
    ((got, tail),) = framing.read_payload_image(path, "ghost_file")
    assert got == head and tail == data
    with pytest.raises(ValueError):  # raw data after a chunked head makes no sense
        head.chunks = True
        framing.write_payload_image(path, "ghost_file", [(head, data)])


def test_tcp_stream_payload_is_both_queues(tmp_path):
    """tcp-stream: the receive then the send queue follow the entry (inq_len + outq_len bytes); a
    writer whose lengths disagree with the bytes is refused, a file cut short names its offset."""
    entry, data = image_samples().samples()["tcp_stream"][0]
    path = framing.image_path(tmp_path, "tcp_stream", 0x325D38)
    assert os.path.basename(path) == "tcp-stream-325d38.img"
    with pytest.raises(ValueError):
        framing.write_payload_image(path, "tcp_stream", [(entry, data + b"!")])
    framing.write_payload_image(path, "tcp_stream", [(entry, data)])
    (m, d), = framing.read_payload_image(path, "tcp_stream")
    assert bytes(d[:m.inq_len]) == b"hello" and bytes(d[m.inq_len:]) == b"pending"
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 3)
    with pytest.raises(ImageError, match=r"at offset \d+: payload of entry 0 needs 12 bytes"):
        framing.read_payload_image(path, "tcp_stream")
