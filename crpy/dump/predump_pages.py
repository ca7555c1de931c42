"""Pre-dump step: the task's pages are referenced while it is frozen and copied after it resumed.

While the tree is frozen the parasite vmsplices every page to save into pipes of crpy's (the
pipes hold references to the pages, not copies); then the tree is cured, detached and runs on,
and crpy splices the pipes into pages-N.img.  A page the task writes after it resumed may reach
the image with its newer bytes, which is harmless: its tracking was re-armed while frozen, so
it shows as written and the next round (or the final dump) saves it again.  Pages the task
cannot read (PROT_NONE) are read through /proc/PID/mem at once.  When the pages need more pipe
room than BUDGET bytes (or too many pipes), they are copied while frozen, as a dump does.
"""

import os

from crpy import faults
from crpy.log import log

BUDGET = 1 << 30                   # bytes of pages a round may hold in pipes (pinned) before copying
MAX_PIPES = 256


class HeldPages:
    """One task's pages of this round, in pages-N.img order: (pipe read end, bytes) or bytes."""

    def __init__(self, pid, plan, saved):
        self.pid, self.plan, self.saved = pid, plan, saved
        self.parts = []

    def close(self):
        for part in self.parts:
            if isinstance(part, tuple):
                os.close(part[0])
        self.parts = []


def fits(plan):
    """Can this round hold the task's pages in pipes until it resumed?"""
    from crpy.dump.parasite import pipe_size_limit

    total = plan.nr_pages * 4096
    return total <= BUDGET and total // pipe_size_limit() < MAX_PIPES


def take_pages(parasite, pid, plan):
    """While frozen: references of plan.runs' pages in pipes (a HeldPages)."""
    from crpy.dump import pages
    from crpy.dump.parasite import _chunks, _grow_pipe

    held = HeldPages(pid, plan, parasite.saved)
    try:
        for readable, group in pages._chunks(plan.runs):
            if not readable:
                held.parts.append(_read_mem(pid, group))
                continue
            r, w = os.pipe2(os.O_CLOEXEC)
            size = _grow_pipe(w)
            os.close(r), os.close(w)
            for iovs, nbytes in _chunks(group, size):
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
    """After the tree resumed: pages-<pages_id>.img from the pipes, then pagemap-PID.img."""
    from crpy.dump import pages
    from crpy.dump.images import follow_image
    from crpy.errors import DumpError
    from crpy.images import framing

    path = framing.image_path(images_dir, "pages", pages_id)
    fd = pages._open_out(path)
    hashed = follow_image(images_dir, path)
    try:
        for part in held.parts:
            if isinstance(part, tuple):
                r, nbytes = part
                done = 0
                while done < nbytes:
                    n = os.splice(r, fd, nbytes - done)
                    if n <= 0:
                        raise DumpError(f"pid {held.pid}: the page pipe ran dry after {done} of {nbytes} bytes")
                    done += n
            else:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view):]
        pages._put_back_frame(fd, held.plan.runs, held, hashed)
    except BaseException:
        hashed.abandon()
        raise
    finally:
        os.close(fd)
        held.close()
    hashed.close()
    pages.write_pagemap(images_dir, held.pid, held.plan, pages_id)
    log.debug("pid %d: %d pages written after the resume", held.pid, held.plan.nr_pages)
