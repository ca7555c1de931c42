"""Compressed page images (`crpy dump --compress`, issue 12) on real processes.

Ten zdtm tests whose memory is of every kind crpy saves (private, shared, memfd, file-backed
private, threads, a tree, brk and stack) run through dumps with --compress, with 1 and 3
iterations, and the tests check their own memory after each restore; one also through a
pre-dump chain and a --leave-running dump, and with its state broken on purpose (its check must
still fail).  A dump's pages images must really be compressed (codec header, pagemap head field);
a compressed image damaged so that its digests still match (rewritten) is refused by the
decoder in one line naming the image and the offset of the damaged block, before any task is
forked; the intact dump restores, and the restored task holds nothing of the decoding (no memfd).
"""

import json
import os
import pathlib
import shutil
import struct

import pytest

from crpy.images import digest, framing, pagecodec
from tests.zdtm import harness, procs
from tests.zdtm.cases import expect_detected, expect_pass, zdtm_tests

COMPRESS_TESTS = ["mem256", "dirtymem", "maps", "brk", "stack", "shmem", "memfd_shared", "filemap_private",
                  "threads_fpu", "tree5"]


@pytest.mark.parametrize("iters", [1, 3])
@zdtm_tests(COMPRESS_TESTS)
def test_compressed_dumps_restore(name, iters):
    expect_pass(name, "--compress", "--iters", str(iters))


@pytest.mark.parametrize("mode", [("--pre", "2"), ("--leave-running",)], ids=["pre-dump-chain", "leave-running"])
def test_compressed_pre_dump_chain_and_leave_running(mode):
    expect_pass("dirtymem", "--compress", *mode)


def test_compressed_dump_of_a_broken_state_is_caught():
    expect_detected("dirtymem", "--compress")


def _pages_images(images):
    """{pages image name: pagemap head} of every pagemap of the dump."""
    out = {}
    for name in os.listdir(images):
        if name.startswith("pagemap-"):
            kind = "pagemap_shmem" if name.startswith("pagemap-shmem-") else "pagemap"
            head = framing.read_image(str(images / name), kind)[0]
            out[os.path.basename(framing.image_path(images, "pages", head.pages_id))] = head
    return out


def _first_compressed_block(path):
    """File offset of the first block that lz4 compressed (not one stored as is)."""
    data, pos = path.read_bytes(), 16
    while pos < len(data):
        raw_len, stored = struct.unpack_from("<II", data, pos)
        if not stored & pagecodec.STORED:
            return pos
        pos += 8 + (stored & ~pagecodec.STORED)
    raise AssertionError(f"{path} has no compressed block")


@pytest.mark.usefixtures("subreaper")
def test_damaged_compressed_pages_are_refused_and_intact_ones_restore(dump_test, tmp_path):
    test, images = dump_test("dirtymem", "--compress")
    images = pathlib.Path(images)
    heads = _pages_images(images)
    assert heads and all(h.crpy_codec == pagecodec.CODEC_LZ4 for h in heads.values()), heads
    for name in heads:
        assert (images / name).read_bytes()[:8] == pagecodec.MAGIC, name
        shown = json.loads(harness.run_crpy("show", images / name).stdout)
        assert shown["codec"] == "lz4" and shown["raw_size"] >= 4096, shown
    pids = test.tree or [test.pid]
    procs.reap_strays()

    damaged = tmp_path / "damaged"
    shutil.copytree(images, damaged)
    name = max(heads, key=lambda n: os.path.getsize(damaged / n))
    at = _first_compressed_block(damaged / name)
    with open(damaged / name, "r+b") as f:       # lz4 sees bad match offsets and lengths
        f.seek(at + 8)
        f.write(b"\xff" * 32)
    res = harness.run_crpy("restore", "-D", damaged, "-d", timeout=120)   # the digests see it first
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and name in res.stderr, res.stderr
    assert "--skip-integrity" in res.stderr, res.stderr
    digest.write_digests(damaged)                # the digests agree: the decoder must see it
    res = harness.run_crpy("restore", "-D", damaged, "-d", "-v4", "-o", "restore.log", timeout=120)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 1 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"{damaged / name} at offset {at}: block does not decompress" in lines[0], lines[0]
    assert " child " not in (damaged / "restore.log").read_text()
    for pid in pids:
        assert procs.proc_state(pid) in (None, "Z", "X"), f"pid {pid} exists after the refusal"

    try:
        harness.restore(str(images), pids[0])
        for pid in pids:
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            assert not [f for f in fds if "crpy-pages" in f], fds
            assert "crpy-pages" not in pathlib.Path(f"/proc/{pid}/maps").read_text()
        passed, reason = test.stop()
        assert passed, reason
    finally:
        procs.kill_alive(pids)
