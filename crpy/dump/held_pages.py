"""Step of the final dump of `crpy migrate --lazy` (DumpOptions.lazy_pages, criu's dump
--lazy-pages): the private pages stay in page pipes past the freeze instead of being copied.

While the tree is frozen the parasite vmsplices each task's pages into pipes of crpy's (page
references, no copy: crpy.dump.predump_pages.take_pages, with no byte budget); pages-N.img is
created at its full size and left empty, and the pagemap is written as usual.  Then the tree is
killed as after any dump.  The pipes now hold the only references to those anonymous pages (the
scan takes no page-cache pages), and nothing writes them any more: a task outside the tree that
shares one copy-on-write copies it before writing, the pipe's reference forbids reuse.  So the
pipes keep the dump's bytes, and the frozen time no longer grows with the memory copied.

After the freeze the pipes are drained into pages-N.img: a part on demand when the page server
is asked for bytes in it (ensure), the rest in the background (drain_all); the parasite's stack
frame bytes are put back after each part, as crpy.dump.pages does.  Pages the task cannot read
and pages past the pipe limit are copied while frozen, as a plain dump does.  The images dir is
a complete dump once drain_all returned.

    held = begin(images_dir) ... (the dump: take(...) per task) ... claim(images_dir) -> HeldDump
    held.ensure(path, offset, length); held.drain_all(); held.close()
"""

import os
import threading
import time

from crpy.log import log

_open = {}                         # realpath of an images dir -> HeldDump of the dump writing it
DRAIN_STEP = 4 << 20               # bytes drained in the background per hold of the lock


class _Image:
    """One pages-N.img: its fd and its parts still in pipes, [offset, nbytes, pipe read end,
    bytes drained already]."""

    def __init__(self, path, fd, held, parts):
        self.path, self.fd, self.held, self.parts = path, fd, held, parts


class HeldDump:
    """The held pages images of one dump; safe to drain from two threads (one lock)."""

    def __init__(self, images_dir):
        self.images_dir = images_dir
        self.images = {}           # realpath of pages-N.img -> _Image
        self.lock = threading.Lock()
        self.drained = 0
        self.budget = None

    def take(self, parasite, pid, plan, pages_id):
        """While frozen: the task's pages into pipes, pages-<pages_id>.img made at its size and
        the pagemap written; returns the bytes of page data."""
        from crpy.dump.images import follow_image
        from crpy.dump.pages import _put_back_frame, write_pagemap
        from crpy.dump.pages import PagePlan
        from crpy.dump.predump_pages import HeldPages, PipeBudget, take_pages
        from crpy.images import framing
        from crpy.pagesio import open_out

        if self.budget is None:        # no byte limit: the tree is killed, pinning costs no memory
            self.budget = PipeBudget("splice", limit=1 << 62)
        path = framing.image_path(self.images_dir, "pages", pages_id)
        held = HeldPages(pid, plan, parasite.saved)
        try:
            for runs in _segments(pid, plan.runs):
                held.parts += take_pages(parasite, pid, PagePlan(runs=runs), self.budget).parts
        except BaseException:
            held.close()
            raise
        fd = open_out(path)
        try:
            parts, offset = [], 0
            for part in held.parts:
                offset += _place(pid, part, fd, offset, parts)
            os.ftruncate(fd, offset)
            _put_back_frame(fd, plan.runs, held, follow_image(self.images_dir, path))
        except BaseException:
            os.close(fd)
            held.close()
            raise
        held.parts = []            # the pipes are ours now (parts)
        self.images[os.path.realpath(path)] = _Image(path, fd, held, parts)
        write_pagemap(self.images_dir, pid, plan, pages_id)
        log.info("pid %d: %d bytes of pages held in %d pipes (%s)", pid, offset, len(parts), path)
        return offset

    def ensure(self, path, offset, length):
        """Bytes [offset, offset+length) of pages image `path` are in the file (drained now if
        not: a pipe only as far as needed, since the pages are asked for mostly in order)."""
        image = self.images.get(os.path.realpath(path))
        if image is None:
            return
        end = offset + length
        with self.lock:
            for part in list(image.parts):
                if part[0] < end and offset < part[0] + part[1]:
                    self._drain(image, part, min(end - part[0], part[1]))

    def drain_all(self):
        """Every pipe into its image (the local dump complete), DRAIN_STEP bytes per hold of the
        lock (a GET meanwhile waits for one step at most); bytes drained here."""
        done = 0
        for image in list(self.images.values()):
            while True:
                with self.lock:
                    if not image.parts:
                        break
                    part = image.parts[0]
                    done += self._drain(image, part, min(part[3] + DRAIN_STEP, part[1]))
        return done

    def _drain(self, image, part, upto):
        """Part [offset, nbytes, pipe, drained] of image drained up to byte `upto` of it."""
        from crpy.dump.images import follow_image
        from crpy.dump.pages import _put_back_frame

        offset, nbytes, r, done = part
        if upto <= done:
            return 0
        t0, first = time.perf_counter(), done
        while done < upto:
            n = os.splice(r, image.fd, upto - done, offset_dst=offset + done)
            if n <= 0:
                raise OSError(0, f"{image.path}: the page pipe ran dry after {done} of {nbytes} bytes")
            done += n
        part[3] = done
        if done == nbytes:
            image.parts.remove(part)
            os.close(r)
        # the frame bytes may fall in what was just drained: put back (again) over it
        _put_back_frame(image.fd, image.held.plan.runs, image.held, follow_image(self.images_dir, image.path))
        self.drained += done - first
        log.debug("Held pages: %d bytes at %d of %s drained (%.1f ms)", done - first, offset + first, image.path,
                  (time.perf_counter() - t0) * 1e3)
        return done - first

    def close(self):
        """Drop what is still in pipes and close the images."""
        with self.lock:
            for image in self.images.values():
                for part in image.parts:
                    os.close(part[2])
                image.parts = []
                os.close(image.fd)
            self.images = {}


BIG_AREA = 8 << 20                 # a VMA with this many bytes of pages gets pipes of its own


def _segments(pid, runs):
    """runs (in file order) cut into groups that never share a pipe: each VMA with BIG_AREA bytes
    of pages or more alone, the smaller ones between together.  Why: the destination fetches
    the pages of the areas it restores eagerly (stacks, data of libraries: small) during the
    frozen time, and a pipe is drained front to back: a few KiB of them at the end of a 64 MiB
    pipe shared with a big area would cost draining all of it then."""
    import bisect

    from crpy.kernel import proc

    starts = [v.start for v in proc.maps(pid, vmflags=False)]
    where = [bisect.bisect_right(starts, s) - 1 for s, _, _, _ in runs]
    sizes = {}
    for (s, e, _, _), vma in zip(runs, where):
        sizes[vma] = sizes.get(vma, 0) + e - s
    group, key = [], None
    for run, vma in zip(runs, where):
        k = vma if sizes[vma] >= BIG_AREA else "small"
        if group and k != key:
            yield group
            group = []
        group.append(run)
        key = k
    if group:
        yield group


def _place(pid, part, fd, offset, parts):
    """One part of take_pages at `offset` of the image: a pipe is kept in parts; bytes read while
    frozen are written now, and so are pages listed for reading (past the pipe limit): the
    task is killed after the dump, so now is the only time.  Returns its length."""
    from crpy.dump.predump_pages import _Reader, _write_all

    if isinstance(part, tuple):
        parts.append([offset, part[1], part[0], 0])
        return part[1]
    os.lseek(fd, offset, os.SEEK_SET)
    if isinstance(part, bytes):
        _write_all(fd, part)
        return len(part)
    reader = _Reader(pid)
    try:
        for addr, length in part:
            reader.copy(addr, length, fd)
    finally:
        reader.close()
    return sum(length for _, length in part)


def begin(images_dir):
    held = _open[os.path.realpath(images_dir)] = HeldDump(images_dir)
    return held


def claim(images_dir):
    """The HeldDump of a finished dump (its caller serves and drains it), or None."""
    return _open.pop(os.path.realpath(images_dir), None)


def abandon(images_dir):
    """The dump failed: its pipes go (the tree resumes as it was)."""
    held = claim(images_dir)
    if held is not None:
        held.close()
