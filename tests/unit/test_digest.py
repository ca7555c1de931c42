"""crpy.images.digest (crpy-digests) and `crpy show` of damaged images.

Digests: written for every image file of a directory and nothing else; each kind of damage is
found and named with the byte range of its chunk; a damaged, missing or foreign digests file is one
error; both hashes (xxh3_64, and crc32 without xxhash) write and check; files bigger than the
mapping window.  `crpy show`: every sample image, damaged in each way, prints valid JSON or one
line naming the image and the offset: never a traceback (a files.img whose path is no longer
UTF-8 used to end in "TypeError: Object of type bytes is not JSON serializable").
"""

import io
import json
import os
import re
import time

import pytest

from crpy import cli
from crpy.errors import ImageError
from crpy.images import digest, framing, show
from tests.unit.crhelpers import image_samples

MIB = 1 << 20


@pytest.fixture
def images(tmp_path):
    """A directory of images: 3.5 MiB of page data, a core image, a log that is not an image."""
    d = tmp_path / "images"
    d.mkdir()
    (d / "pages-1.img").write_bytes(os.urandom(3 * MIB + MIB // 2))
    (d / "core-7.img").write_bytes(os.urandom(3000))
    (d / "dump.log").write_text("not an image\n")
    digest.write_digests(d)
    return d


def _one(d):
    errors = digest.damaged_images(d)
    assert len(errors) == 1, [e.one_line() for e in errors]
    return errors[0].one_line()


def test_every_image_is_recorded_and_nothing_else(images):
    algo, chunk, recorded = digest.read_digests(images)
    assert sorted(recorded) == ["core-7.img", "pages-1.img"]
    assert len(recorded["pages-1.img"].chunks) == 4 and recorded["pages-1.img"].size == 3 * MIB + MIB // 2
    assert chunk == MIB and algo == digest.default_algo()
    assert digest.damaged_images(images) == []
    (images / "dump.log").write_text("changed")                # logs are not images
    assert digest.damaged_images(images) == []


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize("offset, rng", [(0, "[0x0, 0x100000)"), (2 * MIB + 5, "[0x200000, 0x300000)"),
                                         (3 * MIB + 7, "[0x300000, 0x380000)")])
def test_a_flipped_bit_is_named_with_its_chunk(images, offset, rng):
    data = (images / "pages-1.img").read_bytes()
    _patch(images / "pages-1.img", offset, bytes([data[offset] ^ 1]))
    line = _one(images)
    assert "pages-1.img" in line and f"bytes {rng} differ from the dump" in line and "expected 0x" in line
    assert "--skip-integrity" in line


def test_each_damage_is_found(images):
    pages = images / "pages-1.img"
    good = pages.read_bytes()
    damaged = {
        "all ones": good[:MIB] + b"\xff" * 8 + good[MIB + 8:],
        "chunk duplicated": good[:MIB] + good[:MIB] + good[2 * MIB:],
        "chunk zeroed": good[:MIB] + bytes(MIB) + good[2 * MIB:],
        "chunk inserted": good[:MIB] + good[:4096] + good[MIB:],
        "cut short": good[:MIB + 100],
    }
    for how, data in damaged.items():
        pages.write_bytes(data)
        line = _one(images)
        assert "pages-1.img" in line, (how, line)
        if how in ("chunk inserted", "cut short"):
            assert f"holds {len(data)} bytes, the dump wrote {len(good)}" in line, (how, line)
        else:
            assert "bytes [0x100000, 0x200000) differ" in line, (how, line)
    pages.write_bytes(good)
    assert digest.damaged_images(images) == []


def test_several_damaged_images_each_one_line(images):
    _patch(images / "core-7.img", 10, b"\0\0\0\0")
    os.truncate(images / "pages-1.img", 100)
    errors = digest.damaged_images(images)
    assert [os.path.basename(e.path) for e in errors] == ["core-7.img", "pages-1.img"]
    assert all("\n" not in e.one_line() for e in errors)


def test_missing_added_and_foreign(images):
    (images / "core-7.img").rename(images / "core-8.img")
    lines = [e.one_line() for e in digest.damaged_images(images)]
    assert len(lines) == 2
    assert "core-7.img: image is missing (the dump wrote 3000 bytes)" in lines[0]
    assert "core-8.img: this image is not in the dump's digests" in lines[1]
    (images / digest.FILE_NAME).unlink()
    (line,) = [e.one_line() for e in digest.damaged_images(images)]
    assert "no digests of the images" in line and "--skip-integrity" in line


@pytest.mark.parametrize("where", ["head", "entry", "end"])
def test_a_damaged_digests_file_is_told_apart(images, where):
    path = images / digest.FILE_NAME
    data = bytearray(path.read_bytes())
    at = {"head": 14, "entry": len(data) // 2 + 3, "end": len(data) - 1}[where]
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    line = _one(images)
    assert digest.FILE_NAME in line and "the digests file itself is damaged" in line, line


def test_crc32_when_xxhash_is_missing(images, monkeypatch):
    monkeypatch.setattr(digest, "_crc32c_fast", lambda: False)
    monkeypatch.setattr(digest, "_xxh3_64", lambda: None)
    assert digest.default_algo() == "crc32"
    digest.write_digests(images)
    assert digest.read_digests(images)[0] == "crc32"
    assert digest.damaged_images(images) == []
    _patch(images / "core-7.img", 0, b"\x00\x01")
    assert "crc32" in _one(images)


def test_images_bigger_than_the_mapping_window(images, monkeypatch):
    monkeypatch.setattr(digest, "_WINDOW", 2 * MIB)
    digest.write_digests(images)
    assert len(digest.read_digests(images)[2]["pages-1.img"].chunks) == 4
    path = str(images / "pages-1.img")
    assert digest.file_digest(path, "crc32", threads=2).chunks == digest.file_digest(path, "crc32").chunks
    monkeypatch.setattr(digest, "_WINDOW", 64 * MIB)             # same digests however mapped
    assert digest.damaged_images(images) == []
    _patch(images / "pages-1.img", 3 * MIB + 1, b"x")            # in the second part of two
    monkeypatch.setattr(digest, "_WINDOW", MIB)
    assert "[0x300000, 0x380000)" in _one(images)


def test_hashed_in_the_background_then_changed(images):
    rec = digest.Recorder(images)
    rec.hash_written()                                           # pages-1.img, in a thread
    _patch(images / "pages-1.img", 5, b"new")                    # written again before the end
    rec.write()
    assert digest.damaged_images(images) == []


def test_check_images_cli(images, capsys):
    assert cli.main(["check-images", "-D", str(images)]) == 0
    assert "2 images intact" in capsys.readouterr().out
    _patch(images / "core-7.img", 100, b"\xff" * 8)
    assert cli.main(["check-images", "-D", str(images)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "core-7.img" in err[0] and "[0x0, 0xbb8)" in err[0], err


# ------------------------------------------------------------------- crpy show of damaged images

def _damaged_versions(data):
    mid, n = len(data) // 2, max(1, min(64, len(data) // 4))
    return {
        "flip": data[:mid] + bytes([data[mid] ^ 0x80]) + data[mid + 1:],
        "truncate": data[:mid],
        "all_ones": data[:mid] + b"\xff" * 8 + data[mid + 8:],
        "dup_chunk": data[:mid] + data[mid - n:mid] + data[mid:],
        "zero_chunk": data[:mid] + bytes(n) + data[mid + n:],
        "header": b"\xff\xff\xff\xff" + data[4:],
    }


def _show(path, capsys):
    rc = cli.main(["show", str(path)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_show_of_every_damaged_sample_is_json_or_one_line(tmp_path, capsys):
    samples = image_samples()
    (tmp_path / "good").mkdir()
    paths = samples.write_all(tmp_path / "good")
    for kind, good in sorted(paths.items()):
        data = open(good, "rb").read()
        for how, bad in _damaged_versions(data).items():
            path = tmp_path / how / os.path.basename(good)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(bad)
            rc, out, err = _show(path, capsys)
            where = f"{kind} {how}"
            assert "Traceback" not in err, where
            if rc == 0:
                json.loads(out)                              # the damage still decodes: fine
                continue
            lines = err.strip().splitlines()
            assert rc == 1 and len(lines) == 1 and str(path) in lines[0], (where, err)
            assert re.search(r"at offset \d+", lines[0]), (where, lines[0])


def test_show_of_a_files_image_whose_path_is_not_utf8(tmp_path, capsys):
    samples = image_samples()
    good = samples.write_all(tmp_path)["files"]
    data = bytearray(open(good, "rb").read())
    at = data.index(b"/") + 1
    data[at] |= 0x80                                          # a path byte no longer UTF-8
    open(good, "wb").write(bytes(data))
    rc, out, err = _show(good, capsys)
    assert rc == 1 and out == "", out
    (line,) = err.strip().splitlines()
    assert "files.img at offset " in line and "is not UTF-8 text" in line, line


def test_show_dir_prints_the_rest_and_one_line_per_damaged_image(tmp_path, capsys):
    samples = image_samples()
    paths = samples.write_all(tmp_path)
    for kind in ("core", "mm"):
        os.truncate(paths[kind], os.path.getsize(paths[kind]) // 2)
    rc, out, err = _show(tmp_path, capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all("at offset" in l for l in lines), lines
    doc = json.loads(out)
    assert str(paths["pstree"]) in doc and str(paths["core"]) not in doc


def test_show_decodes_crpy_digests(images):
    out = io.StringIO()
    assert show.show([str(images / digest.FILE_NAME)], out=out) == 0
    doc = json.loads(out.getvalue())
    head, *entries = doc["entries"]
    assert doc["magic"] == "CRPY_DIGESTS"
    assert head["chunk_size"] == MIB and [e["name"] for e in entries] == ["core-7.img", "pages-1.img"]


def test_read_digests_of_a_directory_without_them(tmp_path):
    with pytest.raises(digest.DigestsMissing) as info:
        digest.read_digests(tmp_path)
    assert isinstance(info.value, ImageError) and info.value.hint
    assert framing.image_path(tmp_path, "digests") == str(tmp_path / digest.FILE_NAME)


def test_a_followed_file_gets_the_digests_of_its_final_bytes(tmp_path):
    """The pages image is hashed while it is written; bytes written again (the parasite's frame
    put back) are hashed again: the result equals hashing the finished file."""
    rec = digest.Recorder(tmp_path)
    path = tmp_path / "pages-1.img"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    followed = rec.follow(str(path))
    try:
        for _ in range(12):
            os.write(fd, os.urandom(MIB + 12288))
            time.sleep(0.005)                                  # let the follower see it grow
        os.pwrite(fd, b"put back" * 512, 3 * MIB - 100)        # across a chunk boundary
        followed.rewritten(3 * MIB - 100, 4096)
    finally:
        os.close(fd)
    got = followed.close()
    want = digest.file_digest(str(path), rec.algo)
    assert got.chunks == want.chunks and got.size == want.size
    rec.write()
    assert digest.damaged_images(tmp_path) == []
