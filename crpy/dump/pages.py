"""Step: the task's memory contents.

Which pages: PAGEMAP_SCAN (crpy.kernel.pagemap) over the whole address space, clipped to the VMAs
whose pages are saved (vmas.PAGES_PRIVATE).  How: the parasite vmsplices them into a pipe that is
spliced into pages-1.img, so the data never passes through Python.  One writer: tmpfs fills a
file under its inode lock, and the lock-free way (faults on a shared mapping) costs twice the CPU
per page (bench/tmpfs_write.py, README).  pagemap-PID.img lists the runs in file order.  Anonymous shared memory goes to pagemap-shmem-SHMID.img + its own pages file,
read from the shmem object itself (/proc/PID/map_files) with sendfile (crpy.pagesio), so pages only in the page
cache are not lost.  Guard regions (MADV_GUARD_INSTALL) come from the same scan.
"""

import os

from crpy import faults, progress
from crpy.dump import vmas as V
from crpy.images.vma_status import VMA_AREA_AIORING
from crpy.kernel import hugetlb
from crpy.log import log
from crpy.pagesio import open_out as _open_out, write_shmem_object
from crpy.record import dataclass, field

PAGE = 4096
TASK_SIZE = 0x7FFFFFFFF000
PE_LAZY, PE_PRESENT = 1 << 1, 1 << 2
CHUNK = 256 << 20                  # bytes per parasite dump_pages call


@dataclass
class PagePlan:
    runs: list = field(default_factory=list)        # [(start, end, pagemap flags, readable)]
    shmem: dict = field(default_factory=dict)       # shmid -> [(offset, end, VmaPlan)] in the object
    guards: list = field(default_factory=list)      # [(start, end)]
    parent_runs: list = field(default_factory=list) # [(start, end, PE_PARENT, _)]: the parent's pages

    @property
    def nr_pages(self):
        return sum(r[1] - r[0] for r in self.runs) // PAGE


def clip_runs(runs, plans):
    """Intersect sorted scan runs with the sorted private VMAs; one run never spans two VMAs."""
    out, i = [], 0
    private = [p for p in plans if p.pages == V.PAGES_PRIVATE]
    for p in private:
        flags = PE_PRESENT | (PE_LAZY if p.status & V.VMA_ANON_PRIVATE else 0)
        readable = p.task_can_read
        if p.status & VMA_AREA_AIORING:    # all of it (its pages are page cache of the aio file)
            out.append((p.start, p.end, flags, readable))
            continue
        while i < len(runs) and runs[i][1] <= p.start:
            i += 1
        j = i
        while j < len(runs) and runs[j][0] < p.end:
            s, e = max(runs[j][0], p.start), min(runs[j][1], p.end)
            if s < e:
                out.append((s, e, flags, readable))
            j += 1
    return out


def scan_pages(pid, plans):
    from crpy.kernel.pagemap import Pagemap

    plan = PagePlan()
    with Pagemap(pid) as pm:
        plan.runs = clip_runs(pm.data_runs(0, TASK_SIZE), plans)
        plan.guards = [(s, e) for s, e, _ in pm.guard_runs(0, TASK_SIZE)]
    for p in plans:
        if p.pages == V.PAGES_SHMEM:
            plan.shmem.setdefault(p.shmid, []).append((p.pgoff, p.pgoff + p.end - p.start, p))
    log.info("Pages to dump: %d in %d runs, %d shmem objects, %d guard regions",
             plan.nr_pages, len(plan.runs), len(plan.shmem), len(plan.guards))
    return plan


def _chunks(runs):
    """(readable, [(vaddr, length)]) groups in file order: at most CHUNK bytes each (a run may be
    cut in two), never mixing pages the task can read with pages of PROT_NONE/exec-only VMAs."""
    group, size, kind = [], 0, None
    for s, e, _, readable in runs:
        if group and readable != kind:
            yield kind, group
            group, size = [], 0
        kind = readable
        while s < e:
            n = min(e - s, CHUNK - size)
            group.append((s, n))
            size += n
            s += n
            if size == CHUNK:
                yield kind, group
                group, size = [], 0
    if group:
        yield kind, group


def _copy_unreadable(pid, group, out_fd, fed=None):
    """Pages the task itself cannot read (vmsplice would fault): /proc/PID/mem reads them
    (FOLL_FORCE).  Rare and small, so this one path copies through the dumper (and hashes them
    into `fed`, the file's digests the parasite computes otherwise)."""
    log.debug("pid %d: %d bytes of pages it cannot read itself, read from /proc/PID/mem", pid,
              sum(length for _, length in group))
    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        done = 0
        for addr, length in group:
            data = os.pread(mem, length, addr)
            if len(data) != length:
                from crpy.errors import DumpError

                raise DumpError(f"pid {pid}: read {len(data)} of {length} bytes at {addr:#x}")
            if fed is not None:
                fed.update(data)
            if hasattr(out_fd, "write_bytes"):      # a page server's stream (crpy.pageserver.sink)
                out_fd.write_bytes(data)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(out_fd, view):]
            done += length
        return done
    finally:
        os.close(mem)


def dump_private_pages(parasite, images_dir, pid, plan, pages_id=1):
    """pages-<pages_id>.img through the parasite, then pagemap-PID.img; returns bytes written."""
    from crpy.errors import DumpError
    from crpy.images import framing

    from crpy.dump.images import follow_image

    pages_path = framing.image_path(images_dir, "pages", pages_id)
    remote = _page_server_stream(images_dir, pages_path)
    fd = remote if remote is not None else _open_out(pages_path)
    # digests as the pages land; or computed by the parasite as it splices them (fed)
    hashed = remote if remote is not None else follow_image(images_dir, pages_path, fed=True)
    fed = hashed if getattr(hashed, "fed_by_writer", False) else None
    written = 0
    try:
        for n, (readable, group) in enumerate(_chunks(plan.runs)):
            want = sum(length for _, length in group)
            got = parasite.dump_pages(group, fd, fed) if readable else _copy_unreadable(pid, group, fd, fed)
            if got != want:
                raise DumpError(f"pid {pid}: dumped {got} bytes of pages instead of {want}")
            written += got
            progress.bytes_done(got)
            log.debug("Dumped %d bytes of pages (chunk %d)", got, n)
            if n == 0:
                faults.point("pause-in-pages")
        _put_back_frame(fd, plan.runs, parasite, hashed)
        if fed is not None:
            _settle_rseq(fd, plan.runs, parasite, hashed)
    except BaseException:
        hashed.abandon()
        raise
    finally:
        if remote is None:
            os.close(fd)
    hashed.close()
    write_pagemap(images_dir, pid, plan, pages_id)
    return written


def write_pagemap(images_dir, pid, plan, pages_id):
    """pagemap-PID.img: the runs with data (in pages-<pages_id>.img order) and the PE_PARENT ones."""
    from crpy.images import framing
    from crpy.images.pb import pagemap_pb2          # only now: preloaded while pages moved

    entries = [pagemap_pb2.pagemap_head(pages_id=pages_id)]
    # in address order (criu's reader wants it); the runs with data keep their file order
    entries += [framing.new_pagemap_entry(s, (e - s) // PAGE, f) for s, e, f, _ in sorted(plan.runs + plan.parent_runs)]
    framing.write_image(framing.image_path(images_dir, "pagemap", pid), "pagemap", entries)


def _page_server_stream(images_dir, pages_path):
    """The page sink of `--page-server` (crpy.pageserver.sink), or None: a local file."""
    from crpy import pageserver

    return pageserver.pages_stream(images_dir, pages_path)


def _put_back_frame(fd, runs, parasite, hashed):
    """The parasite keeps an emergency rt_sigframe on the task's stack while it is in; the image
    must hold the bytes the task had there (the parasite saved them), not the frame."""
    saved = getattr(parasite, "saved", None)
    frame, old = getattr(saved, "frame", None), getattr(saved, "stack_bytes", None)
    if frame is not None and old is not None:
        _overwrite(fd, runs, frame.start, old, hashed)


def _settle_rseq(fd, runs, parasite, hashed):
    """The kernel writes the rseq area (cpu_id, mm_cid) of the thread that runs the parasite
    each time it returns to user mode after a switch, which it does between commands: a page
    the parasite hashed could change before the splice copied it out of the pipe (seen under
    load; 17 dumps in 30 when the task was moved between CPUs during the dump).
    So the area as it is now goes over the image, and its chunk is hashed again from the file.
    Its values do not matter to a restore: the kernel fills them in before the task runs."""
    from crpy.dump import infect_mem
    from crpy.errors import CrpyError

    saved = getattr(parasite, "saved", None)
    area = getattr(saved, "rseq", None)
    if area is None:
        return
    try:
        data = infect_mem.read(saved.pid, *area)
    except CrpyError as e:      # not mapped (so not in the image either): nothing to settle
        log.debug("pid %d: rseq area %#x not read: %s", saved.pid, area[0], e)
        return
    _overwrite(fd, runs, area[0], data, hashed)


def _overwrite(fd, runs, start, data, hashed):
    """`data`, the task's bytes at address `start`, over the image wherever its runs (in file
    order) hold them; those bytes are hashed again (hashed.rewritten)."""
    end, offset = start + len(data), 0
    for s, e, _, _ in runs:
        lo, hi = max(s, start), min(e, end)
        if lo < hi:
            if hasattr(fd, "pwrite"):               # a page server's stream
                fd.pwrite(data[lo - start:hi - start], offset + lo - s)
            else:
                os.pwrite(fd, data[lo - start:hi - start], offset + lo - s)
            hashed.rewritten(offset + lo - s, hi - lo)
        offset += e - s


def dump_shmem(images_dir, pid, plan, pages_ids, done):
    """One pagemap-shmem-SHMID.img + pages-N.img per anonymous shared object not in `done`
    (an object several tasks map is written once); bytes written."""
    written = 0
    for shmid, ranges in sorted(plan.shmem.items()):
        if shmid in done:
            continue
        done.add(shmid)
        vma = ranges[0][2]
        src = os.open(f"/proc/{pid}/map_files/{vma.start:x}-{vma.end:x}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            # the whole object: other tasks, or this one after an mremap back, may see any of it
            size = max([os.fstat(src).st_size] + [e for _, e, _ in ranges])
            written += write_shmem_object(images_dir, src, shmid, [(0, size)], next(pages_ids),
                                          huge_page=hugetlb.page_size(vma.flags))
        finally:
            os.close(src)
    return written


def dump_pages(parasite, images_dir, pid, plan, pages_ids=None, shmem_done=None, held=None):
    """All page data of the task: private memory, then anonymous shared memory; byte counts.
    pages_ids: the tree's counter of pages-N.img numbers; shmem_done: shmids written already;
    held: a crpy.dump.held_pages.HeldDump (--lazy-pages): private pages kept in pipes, not copied."""
    import itertools

    pages_ids = pages_ids if pages_ids is not None else itertools.count(1)
    shmem_done = shmem_done if shmem_done is not None else set()
    if held is not None:
        return {"pages_bytes": held.take(parasite, pid, plan, next(pages_ids)),
                "shmem_bytes": dump_shmem(images_dir, pid, plan, pages_ids, shmem_done)}
    return {"pages_bytes": dump_private_pages(parasite, images_dir, pid, plan, next(pages_ids)),
            "shmem_bytes": dump_shmem(images_dir, pid, plan, pages_ids, shmem_done)}
