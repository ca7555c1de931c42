"""crpy.kernel.crc32c (the digest of crpy-digests, same C as the parasite's) and the digest
file format around it: the known check value and a bit-at-a-time reference over every length
and alignment class; the SSE4.2 path against the table path; file_chunks against per-chunk
hashing, files_chunks against file_chunks; a writer-fed pages image (_Fed) equals hashing the finished file; digests files of
format version 1 (no version field, xxh3_64 or crc32) are still checked, a newer version and an
algorithm its version does not know are refused in one line.
"""

import os
import random

import pytest

from crpy.images import digest, framing
from crpy.kernel import crc32c as C

MIB = 1 << 20


def _reference(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_check_value():
    assert C.crc32c(b"123456789") == 0xE3069283      # the CRC-32C check value (RFC 3720)
    assert C.crc32c(b"") == 0


def test_every_length_and_alignment_class_against_the_reference():
    rng = random.Random(14)
    data = rng.randbytes(3 * 8192 * 3 + 4096)
    lengths = [0, 1, 7, 8, 9, 255, 256, 767, 768, 769, 3 * 256 + 8, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1,
               3 * 8192 * 2 + 3 * 256 + 13]
    for n in lengths:
        for start in range(0, 9):
            piece = data[start:start + n]
            want = _reference(piece)
            assert C.crc32c(piece) == want, (start, n)
            cut = rng.randrange(0, n + 1)                  # in two calls: the crc goes on
            assert C.crc32c(piece[cut:], C.crc32c(piece[:cut])) == want, (start, n, cut)


def test_the_table_path_equals_the_instruction():
    if not C.fast():
        pytest.skip("this CPU has no SSE4.2 crc32 instruction (no sse4_2 in /proc/cpuinfo): only the table path runs")
    from crpy.kernel._sys import lib

    lib.crpy_crc32c_sse42()
    data = os.urandom(100_003)
    assert lib.crpy_crc32c_soft(0, data, len(data)) == C.crc32c(data)


def test_file_chunks(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(5 * MIB + 12345)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        want = [C.crc32c(data[i:i + MIB]) for i in range(0, len(data), MIB)]
        assert C.file_chunks(fd, 0, len(data), MIB) == want
        assert C.file_chunks(fd, 2 * MIB, len(data), MIB) == want[2:]
        assert C.file_chunks(fd, MIB, 3 * MIB, MIB) == want[1:3]
        assert C.file_chunks(fd, 0, 0, MIB) == []
        with pytest.raises(OSError):                      # shorter than it was said to be
            C.file_chunks(fd, 0, len(data) + MIB, MIB)
    finally:
        os.close(fd)


def test_files_chunks_many_files_in_one_call(tmp_path):
    """files_chunks: each file as file_chunks hashes it; a file of another size than the one
    given, and a missing one, are told apart (size, None) and (-errno, None)."""
    import errno

    sizes = [0, 1, 4096, MIB, MIB + 7, 3 * MIB]
    files = []
    for i, size in enumerate(sizes):
        (tmp_path / f"f{i}").write_bytes(os.urandom(size))
        files.append((f"f{i}", size))
    dirfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = C.files_chunks(dirfd, files + [("f1", 2), ("gone", 10)], MIB)
    finally:
        os.close(dirfd)
    for (name, size), (found, chunks) in zip(files, got):
        fd = os.open(tmp_path / name, os.O_RDONLY)
        assert (found, chunks) == (size, C.file_chunks(fd, 0, size, MIB)), name
        os.close(fd)
    assert got[-2:] == [(1, None), (-errno.ENOENT, None)]


def test_a_writer_fed_image_equals_the_finished_file(tmp_path):
    """What the parasite feeds (state() -> fed()), bytes the dumper wrote itself (update()) and
    bytes put back later (rewritten()): the digests are those of the finished file."""
    path = tmp_path / "pages-1.img"
    done = {}
    fed = digest._Fed(str(path), lambda p, r: done.setdefault(p, r))
    data = bytearray(os.urandom(3 * MIB + 5000))
    fed.update(data[:5000])                                # the dumper's own bytes first
    crc, into = fed.state()
    assert (crc, into) == (C.crc32c(data[:5000]), 5000)
    # the "parasite", two DUMP commands: the first completes chunks 0 and 1, the second leaves
    # chunk 2 part done
    fed.fed(0, 0, [C.crc32c(data[5000:MIB], crc), C.crc32c(data[MIB:2 * MIB])])
    fed.fed(C.crc32c(data[2 * MIB:3 * MIB - 7]), MIB - 7, [])
    fed.update(data[3 * MIB - 7:])
    data[MIB - 10:MIB + 10] = b"x" * 20                    # put back across a chunk boundary
    fed.rewritten(MIB - 10, 20)
    path.write_bytes(data)
    got = fed.close()
    want = digest.file_digest(str(path), "crc32c")
    assert got.chunks == want.chunks and got.size == want.size == len(data)
    assert done[str(path)] is got


def test_a_fed_image_that_ended_elsewhere_is_hashed_whole(tmp_path):
    path = tmp_path / "pages-1.img"
    data = os.urandom(2 * MIB + 3)
    path.write_bytes(data)
    fed = digest._Fed(str(path), lambda p, r: None)
    fed.update(data[:MIB])                                 # fed less than the file holds
    assert fed.close().chunks == digest.file_digest(str(path), "crc32c").chunks


@pytest.fixture
def images(tmp_path):
    (tmp_path / "pages-1.img").write_bytes(os.urandom(2 * MIB + 100))
    (tmp_path / "core-1.img").write_bytes(os.urandom(300))
    return tmp_path


def _rewrite_head(images, algo, version):
    """crpy-digests of images in `algo`, its head saying `version` (None: no field, format 1)."""
    entries = []
    for name in digest.image_names(images):
        d = digest.file_digest(str(images / name), algo)
        entries.append(framing.message_class("crpy_digest_pb2.image_digest_entry")(
            name=name, size=d.size, chunks=d.chunks))
    digest.write_digests_file(str(images), algo, digest.CHUNK_SIZE, entries)
    path = images / digest.FILE_NAME
    head, *rest = framing.read_image(str(path), "digests")
    if version is None:
        head.ClearField("version")
    else:
        head.version = version
    framing.write_image(str(path), "digests", [head] + rest)


def test_a_new_dump_writes_crc32c_in_format_2(images):
    if not C.fast():
        pytest.skip("this CPU has no SSE4.2 crc32 instruction (no sse4_2 in /proc/cpuinfo): xxh3_64 is the default")
    digest.write_digests(images)
    path = images / digest.FILE_NAME
    head = framing.read_image(str(path), "digests")[0]
    assert (head.algo, head.version) == ("crc32c", digest.VERSION) == ("crc32c", 2)
    assert digest.damaged_images(images) == []


@pytest.mark.parametrize("algo", ["xxh3_64", "crc32"])
def test_format_1_digests_are_still_checked(images, algo):
    if algo == "xxh3_64" and digest._xxh3_64() is None:
        pytest.skip("python-xxhash is not installed: no xxh3_64 digests to check")
    _rewrite_head(images, algo, None)
    assert digest.read_digests(images)[0] == algo
    assert digest.damaged_images(images) == []
    with open(images / "pages-1.img", "r+b") as f:
        f.seek(MIB + 5)
        f.write(b"\xff")
    errors = digest.damaged_images(images)
    assert len(errors) == 1 and "[0x100000, 0x200000)" in str(errors[0]) and algo in str(errors[0])


@pytest.mark.parametrize("algo, version, says", [
    ("crc32c", 3, "digests format version 3: this crpy reads versions up to 2"),
    ("crc32c", None, "unknown digest algorithm 'crc32c' in format version 1"),
])
def test_a_newer_format_or_an_algorithm_its_version_lacks_is_refused(images, algo, version, says):
    _rewrite_head(images, algo, version)
    errors = digest.damaged_images(images)
    assert len(errors) == 1 and says in str(errors[0]) and "\n" not in errors[0].one_line()
