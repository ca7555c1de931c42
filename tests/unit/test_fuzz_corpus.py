"""Regression tests of the image fuzzing (fuzz/): every saved crashing input (tests/fuzz/corpus)
is refused in one line naming the image and the offset; the structure-aware mutator keeps images
framed; and, when atheris is installed, a short coverage-guided run of one target works."""

import os
import struct
import subprocess
import sys

import pytest

from crpy.errors import ImageError
from crpy.images import framing
from fuzz import protomut, targets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def _corpus():
    return sorted((t, name) for t in os.listdir(CORPUS) for name in os.listdir(os.path.join(CORPUS, t)))


@pytest.mark.parametrize("target_name,file_name", _corpus())
def test_saved_crash_is_refused_in_one_line(tmp_path, target_name, file_name):
    from crpy.images import magic

    image_name = file_name.split("--")[0]
    kind = magic.kind_by_filename(image_name).name
    target = targets.TARGETS[target_name](kind, image_name, str(tmp_path))
    data = open(os.path.join(CORPUS, target_name, file_name), "rb").read()
    error = target.run(data)
    targets.check_outcome(target, error)
    assert isinstance(error, ImageError) and error.offset is not None, error


def test_file_name_with_nul_byte_is_refused_at_its_files_entry(tmp_path):
    """Found by the load target: a files.img name holding a NUL made os.stat raise ValueError."""
    from crpy.restore import load

    cls = framing.message_class("fdinfo_pb2.file_entry")
    # minimized: files.img of one regular file entry whose name holds a NUL byte
    entry = cls(type=1, id=1)
    entry.reg.id, entry.reg.flags, entry.reg.pos, entry.reg.name = 1, 0, 0, "/a\x00b"
    entry.reg.fown.uid = entry.reg.fown.euid = entry.reg.fown.signum = 0
    entry.reg.fown.pid_type = entry.reg.fown.pid = 0
    path = framing.image_path(tmp_path, "files")
    framing.write_image(path, "files", [entry])
    with pytest.raises(ImageError) as info:
        load._existing_file(entry.reg, "the executable", str(tmp_path))
    assert info.value.path == path and info.value.offset == 12, info.value.one_line()
    assert "NUL" in info.value.one_line()


def test_empty_shmem_pagemap_is_refused_at_its_end(tmp_path):
    """Found by the load target on a tree dump: a pagemap-shmem image without its head made
    load._add_shmem fail with IndexError.  Minimized: the image's two magics, no entry."""
    from crpy.restore import load

    spath = framing.image_path(tmp_path, "pagemap_shmem", 4170)
    with open(spath, "wb") as f:
        f.write(struct.pack("<II", 0x54564319, 0x56084025))
    area = load.Area(0x10000, 0x11000, 0, 3, 1, 0, 0, "anon_shared", shmid=4170)
    with pytest.raises(ImageError) as info:
        load._add_shmem(area, framing, spath)
    assert info.value.path == spath and info.value.offset == 8, info.value.one_line()


def test_mutator_keeps_images_framed():
    """Field-level mutations re-frame: the result still splits into entries, or is a byte mutation."""
    import random

    head = bytes.fromhex("0801") + bytes.fromhex("1205") + b"hello"
    image = struct.pack("<II", 0x54564319, 0x55053847) + struct.pack("<I", len(head)) + head
    assert protomut.parse_fields(head) == [(1, 0, 1), (2, 2, b"hello")]
    assert protomut.encode_fields(protomut.parse_fields(head)) == head
    rng = random.Random(1)
    framed = sum(protomut.split_frames(protomut.mutate_image(rng, image)) is not None for _ in range(200))
    assert framed > 100


def test_short_coverage_guided_run(tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed: `python3 -m pip install atheris`")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(open(os.path.join(ROOT, "tests", "fixtures", "criu-4.2", "counter-images",
                                                    "mm-8802.img"), "rb").read())
    stats = tmp_path / "stats.json"
    r = subprocess.run([sys.executable, "-m", "fuzz.run", "--child", "--target", "framing", "--kind", "mm",
                        "--name", "mm-8802.img", "--corpus", str(corpus), "--stats", str(stats),
                        "--runs", "300", "--seed", "1", "--max-time", "60", "--workdir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Done 300 runs" in r.stderr
    assert '"crashes": 0' in stats.read_text()
