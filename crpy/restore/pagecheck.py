"""Restore step: each task checks the page chunks it reads, as it reads them (crpy-digests).

Reading a GiB of page cache before the first fork only to hash it costs more than the whole
hash budget of a restore; the tasks read their pages anyway (crpy.restore.premap), so each hashes
the bytes it has just read into place while they are still in the CPU's cache
(crpy.kernel.crc32c.pread_crc) and compares the digests of the chunks it alone was given.

    plan(nodes, images_dirs)      before the first fork: which task checks which chunks of which
                                  pages image (task.page_checks); returns {path: {chunk}} planned,
                                  the chunks the pre-fork check (crpy.restore.integrity) skips
    Parts()                       in a task: the digests of its reads, filled by premap
    verify(checks, parts)         in a task, before it says it is ready: ImageError on damage

A chunk goes to the first task whose reads cover all of it; chunks no task reads whole (holes,
pages read by no one, compressed images read through their decoded copy, lazy pages) stay with
the pre-fork check.  The restore barrier lets no task run before every task said it is ready,
so a damaged chunk still stops the whole tree before any of the dumped code runs.
"""

import os

from crpy.images import digest
from crpy.images.pages import is_pages_image

_ALGO = "crc32c"                   # the only hash a task computes as it reads (in C)


def plan(nodes, images_dirs):
    """Give each task (node.task.page_checks: {path as its runs name it: (chunk size, size,
    {chunk: digest})}) the chunks it checks; {real path: {chunk}} of them all."""
    dirs = {}
    expected = _expected_digests(images_dirs, dirs)
    planned = {}
    if not expected:
        return planned
    for node in nodes:
        task = node.task
        if task is None:
            continue
        checks = {}
        for path, reads in _reads(task).items():     # path as premap opens it
            real = digest.real_path(path, dirs)
            want = expected.get(real)
            if want is None:
                continue
            chunk_size, size, chunks = want
            taken = planned.setdefault(real, set())
            mine = {}
            for lo, hi in _covered(reads, chunk_size, min(size, len(chunks) * chunk_size)):
                mine.update(zip(range(lo, hi), chunks[lo:hi]))
            if taken:
                mine = {i: d for i, d in mine.items() if i not in taken}
            if mine:
                taken.update(mine)
                checks[path] = (chunk_size, size, mine)
        task.page_checks = checks or None
    return {path: chunks for path, chunks in planned.items() if chunks}


def _expected_digests(images_dirs, dirs):
    """{real path of a pages image: (chunk size, size, [digest])} of the directories whose
    crpy-digests can be read and use crc32c (the pre-fork check tells what is wrong with others)."""
    out = {}
    for d in images_dirs:
        try:
            algo, chunk_size, recorded = digest.read_digests(d)
        except Exception:  # noqa: BLE001 - the pre-fork check reports it
            continue
        if algo != _ALGO:
            continue
        for name, entry in recorded.items():
            if is_pages_image(name):
                out[digest.real_path(os.path.join(d, name), dirs)] = (chunk_size, entry.size, list(entry.chunks))
    return out


def _reads(task):
    """{path: [(offset, length)] merged} the task's premap reads (crpy.restore.premap)."""
    reads = {}
    for area in task.areas:
        if area.lazy:
            continue
        for _, length, path, offset in area.runs:
            reads.setdefault(path, []).append((offset, length))
    return {path: _merged(pieces) for path, pieces in reads.items()}


def _merged(pieces):
    out = []
    for off, n in sorted(pieces):
        if out and off <= out[-1][1]:
            out[-1][1] = max(out[-1][1], off + n)
        else:
            out.append([off, off + n])
    return out


def _covered(merged, chunk_size, size):
    """(first, end) of each run of chunks of a size-byte file that one of the merged [start, end)
    ranges covers whole (worked out, not looped over: a GiB's 1024 chunks)."""
    count = -(-size // chunk_size)
    for start, end in merged:
        first = -(-start // chunk_size)
        last = count if end >= size else min(end // chunk_size, count)
        if first < last:
            yield first, last


class Parts:
    """The digests of a task's reads: {path: [(file offset, length, crc32c)]}, each part inside
    one chunk (premap's reading threads append to it)."""

    def __init__(self):
        self.by_path = {}

    def add(self, path, offset, length, chunk_size, crcs):
        """crcs: pread_crc's digests of the read of length bytes at offset (cut at chunks)."""
        parts = self.by_path.setdefault(path, [])
        pos, end = offset, offset + length
        for crc in crcs:
            stop = min((pos // chunk_size + 1) * chunk_size, end)
            parts.append((pos, stop - pos, crc))
            pos = stop


def verify(checks, parts):
    """Raise the ImageError of the first planned chunk whose bytes, as read, differ from the dump."""
    from crpy.log import log

    reread = 0
    for path, (chunk_size, size, chunks) in sorted(checks.items()):
        got = parts.by_path.get(path, ())
        # most chunks were read whole by one read: their digest is the part's (one pass in C)
        whole = {off // chunk_size: crc for off, n, crc in got
                 if off % chunk_size == 0 and (n == chunk_size or off + n == size)}
        odd = sorted(i for i, expected in chunks.items() if whole.get(i) != expected)
        if not odd:
            continue
        by_chunk = {}
        for part in got:
            by_chunk.setdefault(part[0] // chunk_size, []).append(part)
        bad = []
        for i in odd:                       # read in pieces, not read at all, or damaged
            lo, hi = i * chunk_size, min((i + 1) * chunk_size, size)
            found = _joined(by_chunk.get(i, ()), lo, hi)
            if found is None:              # not read as planned (never expected): hash the file
                found = _hash_file_chunk(path, lo, hi, chunk_size)
                reread += 1
            if found != chunks[i]:
                bad.append((i, found, chunks[i]))
        if bad:
            i, found, expected = bad[0]
            raise digest.chunk_error(path, i, chunk_size, size, _ALGO, found, expected, len(bad) - 1)
    log.info("pages intact: %d chunks checked as they were read, %d read again (not read whole)",
             sum(len(c[2]) for c in checks.values()) - reread, reread)


def _joined(parts, lo, hi):
    """crc32c of bytes [lo, hi) from the digests of parts that tile them, or None if they don't."""
    from crpy.kernel import crc32c

    crc, pos = 0, lo
    for off, n, part_crc in sorted(set(parts)):
        if off + n <= pos:                 # read twice (two areas showing the same pages)
            continue
        if off != pos:
            return None
        crc = crc32c.combine(crc, part_crc, n) if pos > lo else part_crc
        pos += n
    return crc if pos == hi else None


def _hash_file_chunk(path, lo, hi, chunk_size):
    from crpy.kernel import crc32c

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return crc32c.file_chunks(fd, lo, hi, chunk_size)[0]
    finally:
        os.close(fd)
