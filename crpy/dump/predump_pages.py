"""Pre-dump step: the task's pages are listed while it is frozen and copied after it resumed.

criu's --pre-dump-mode, both correct:
  splice (the default): while frozen the parasite vmsplices the pages into pipes of crpy's (the
    pipes hold references to the pages, not copies); after the resume crpy splices the pipes into
    pages-N.img.  Pages beyond BUDGET bytes (pinned memory) or MAX_PIPES pipes are read as below.
  read: nothing is taken while frozen; after the resume crpy reads the pages with
    process_vm_readv (no pinned memory, one copy through a buffer).
Why copying after the resume is right: the round's tracking was re-armed while frozen (PAGEMAP_SCAN
with PM_SCAN_WP_MATCHING, crpy.dump.memtrack), before any page is read.  A page the task writes
after the resume therefore shows as written and the next round (or the final dump) saves it
again, so what this round's image holds for it (old bytes, newer bytes, or a mix) never
reaches a restore.  A page that cannot be read after the resume was unmapped meanwhile (its VMA
is gone or new next round: never taken from this round); zeros stand for it.  A page made
PROT_NONE meanwhile is read through /proc/PID/mem, as are, at once while frozen, the pages the
task cannot read at the scan.
"""

import errno
import os

from crpy import faults
from crpy.log import log

MODES = ("splice", "read")
BUDGET = 1 << 30                   # bytes of pages a round may hold in pipes (pinned)
MAX_PIPES = 256
READ_CHUNK = 8 << 20               # bytes per process_vm_readv


class HeldPages:
    """One task's pages of this round, in pages-N.img order: parts are (pipe read end, nbytes),
    bytes (read while frozen) or [(vaddr, length)] (read after the resume)."""

    def __init__(self, pid, plan, saved):
        self.pid, self.plan, self.saved = pid, plan, saved
        self.parts = []

    def sizes(self):
        """(bytes in pipes, bytes to read after the resume, bytes read while frozen)."""
        pipes = sum(p[1] for p in self.parts if isinstance(p, tuple))
        later = sum(n for p in self.parts if isinstance(p, list) for _, n in p)
        return pipes, later, sum(len(p) for p in self.parts if isinstance(p, bytes))

    def close(self):
        for part in self.parts:
            if isinstance(part, tuple):
                os.close(part[0])
        self.parts = []


class PipeBudget:
    """What the tree's pipes may still hold in this round (shared by its tasks)."""

    def __init__(self, mode, limit=None, pipes=None):
        """limit, pipes: bytes and pipes at most (default BUDGET and MAX_PIPES, read now)."""
        self.bytes, self.pipes = ((BUDGET if limit is None else limit, MAX_PIPES if pipes is None else pipes)
                                  if mode == "splice" else (0, 0))

    def take(self, nbytes):
        if nbytes > self.bytes or self.pipes < 1:
            return False
        self.bytes, self.pipes = self.bytes - nbytes, self.pipes - 1
        return True


def take_pages(parasite, pid, plan, budget):
    """While frozen: plan.runs as page references in pipes, as long as the budget lasts; the
    rest is listed for reading after the resume (a HeldPages)."""
    from crpy.dump import pages
    from crpy.dump.parasite import _chunks, _grow_pipe

    held = HeldPages(pid, plan, parasite.saved)
    try:
        for readable, group in pages._chunks(plan.runs):
            if not readable:
                held.parts.append(_read_mem(pid, group))
                continue
            if budget.pipes < 1:
                held.parts.append(group)
                continue
            r, w = os.pipe2(os.O_CLOEXEC)
            size = _grow_pipe(w)
            os.close(r), os.close(w)
            for iovs, nbytes in _chunks(group, size):
                if not budget.take(nbytes):
                    held.parts.append(iovs)
                    continue
                r, w = os.pipe2(os.O_CLOEXEC)
                held.parts.append((r, nbytes))
                try:
                    _grow_pipe(w)
                    parasite.vmsplice_into(w, iovs, nbytes)
                finally:
                    os.close(w)
                if len(held.parts) == 1:
                    faults.point("pause-in-pages")
    except BaseException:
        held.close()
        raise
    return held


def _read_mem(pid, group):
    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return b"".join(os.pread(mem, length, addr) for addr, length in group)
    finally:
        os.close(mem)


def write_pages(held, pages_id, images_dir):
    """After the tree resumed: pages-<pages_id>.img from the parts, then pagemap-PID.img."""
    from crpy.dump import pages
    from crpy.dump.images import follow_image
    from crpy.images import framing

    path = framing.image_path(images_dir, "pages", pages_id)
    fd = pages._open_out(path)
    hashed = follow_image(images_dir, path)
    reader = None
    try:
        for part in held.parts:
            if isinstance(part, tuple):
                _splice_out(held.pid, part, fd)
            elif isinstance(part, bytes):
                _write_all(fd, part)
            else:
                reader = reader or _Reader(held.pid)
                for addr, length in part:
                    reader.copy(addr, length, fd)
        pages._put_back_frame(fd, held.plan.runs, held, hashed)
    except BaseException:
        hashed.abandon()
        raise
    finally:
        os.close(fd)
        held.close()
        if reader is not None:
            reader.close()
    hashed.close()
    pages.write_pagemap(images_dir, held.pid, held.plan, pages_id)
    log.debug("pid %d: %d pages written after the resume", held.pid, held.plan.nr_pages)


def _splice_out(pid, part, fd):
    from crpy.errors import DumpError

    r, nbytes = part
    done = 0
    while done < nbytes:
        n = os.splice(r, fd, nbytes - done)
        if n <= 0:
            raise DumpError(f"pid {pid}: the page pipe ran dry after {done} of {nbytes} bytes")
        done += n


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Reader:
    """process_vm_readv of a running task into one reused buffer."""

    def __init__(self, pid):
        from crpy.kernel._sys import ffi

        self.pid, self.mem = pid, None
        self.buf = ffi.new("char[]", READ_CHUNK)
        self.local, self.remote = ffi.new("struct iovec *"), ffi.new("struct iovec *")
        self.local.iov_base = self.buf

    def copy(self, addr, length, fd):
        from crpy.kernel._sys import ffi, lib

        while length:
            n = min(length, READ_CHUNK)
            self.local.iov_len = self.remote.iov_len = n
            self.remote.iov_base = ffi.cast("void *", addr)
            got = lib.process_vm_readv(self.pid, self.local, 1, self.remote, 1, 0)
            if got < 0 and ffi.errno == errno.ESRCH:
                from crpy.errors import NoSuchProcess

                raise NoSuchProcess(self.pid)
            if got <= 0:                   # made PROT_NONE, or unmapped, since the scan
                got = min(n, 4096 - addr % 4096)
                _write_all(fd, self._forced(addr, got))
            else:
                _write_all(fd, ffi.buffer(self.buf, got))
            addr, length = addr + got, length - got

    def _forced(self, addr, n):
        """One page through /proc/PID/mem (FOLL_FORCE reads PROT_NONE too: mprotect keeps a
        page's tracking, so its bytes matter); zeros if it is unmapped."""
        if self.mem is None:
            self.mem = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(self.mem, n, addr)
        except OSError:
            data = b""
        if len(data) != n:
            log.debug("pid %d: %#x unmapped since the scan, zeros stand for it", self.pid, addr)
            return bytes(n)
        return data

    def close(self):
        if self.mem is not None:
            os.close(self.mem)
            self.mem = None
