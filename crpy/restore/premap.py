"""Restore step (child): premap every VMA of the task into its slot of the restorer region.

Each slot gets a mapping of the VMA's final kind (anonymous private or shared, growsdown for a
stack, private or shared of the right file at the right offset), its saved pages are read in
with preadv straight from pages-N.img (big chunks, no copy through Python objects; anonymous
memory allocated by MADV_POPULATE_WRITE a MiB at a time right before its read, a big fill in
two threads), then it gets its final protection and madvise flags.  The pages images' chunks
this task was given to check (crpy.restore.pagecheck) are read a piece at a time and hashed as
they land, in C, and checked before the task goes on: damage is this task's one-line error, and
no task runs.  The blob then only has to mremap each slot into place; VMA flags, file and offset
travel with the mapping.  This is the hot path of a restore.
"""

import ctypes
import errno
import os

from crpy.errors import RestoreError
from crpy.kernel import hugetlb
from crpy.kernel.syscalls import NR, sys_call
from crpy.log import log

PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_DROPPABLE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x08, 0x10, 0x20
MAP_TYPE = 0x0f
MAP_NORESERVE, MAP_GROWSDOWN, MAP_FIXED_NOREPLACE = 0x4000, 0x0100, 0x100000
# vma_entry.flags kept as mmap flags (hugetlb: with its page size)
_HUGE_FLAGS = hugetlb.MAP_HUGETLB | hugetlb.MAP_HUGE_MASK
_ANON_FLAGS = MAP_GROWSDOWN | MAP_NORESERVE | _HUGE_FLAGS
CHUNK = 16 << 20                   # bytes of one read (the fill threads take them in turn)
PAGE = 4096
IOV_MAX = 1024
# madvise advice numbers carried in vma_entry.madv as 1 << advice; the ones that set VMA flags.
_BEFORE_FILL = (14, 15)            # MADV_HUGEPAGE, MADV_NOHUGEPAGE: decide how pages are backed
_AFTER_FILL = (1, 2, 10, 12, 16, 18)   # RANDOM, SEQUENTIAL, DONTFORK, MERGEABLE, DONTDUMP, WIPEONFORK
NR_MLOCK, NR_PKEY_MPROTECT, NR_PKEY_ALLOC = 149, 329, 330
MAP_LOCKED = 0x2000                # vma_entry.flags of an mlock()ed VMA ("lo" in smaps)


def _syscall(nr, a1=0, a2=0, a3=0, a4=0, a5=0, a6=0, what=None):
    """sys_call without its generality: premap issues a few syscalls per VMA, tens of
    thousands for a big address space.  what: a callable naming the call, run on error only."""
    from crpy.kernel._sys import ffi, lib

    ret = lib.crpy_syscall6(nr, a1, a2, a3, a4, a5, a6)
    if ret == -1:
        from crpy.errors import from_errno

        raise from_errno(ffi.errno, what())
    return ret


def reserve_region(plan):
    """Map the whole region PROT_NONE at its planned place (refusing to replace anything)."""
    addr = sys_call(NR.mmap, plan.start, plan.length, 0,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0,
                    what=f"reserve the restorer region at {plan.start:#x}")
    if addr != plan.start:
        raise RestoreError(f"restorer region landed at {addr:#x}, not {plan.start:#x}")


def premap_all(slots, checks=None):
    """Premap every slot, fill them all, then give each its final protection and advice.
    checks: the task's page_checks (crpy.restore.pagecheck), verified once all is read.
    Returns the number of page bytes read."""
    for slot in slots:
        _map(slot.area, slot.addr)
    total = fill(slots, checks)
    for slot in slots:
        _protect(slot.area, slot.addr)
    return total


def _fill_prot(area):
    """Writable while its pages are read in.  (A private mapping made writable and then
    read-only keeps VM_ACCOUNT, "ac" in smaps, just like the task's did; one never written is
    left as mapped, so a huge PROT_NONE reservation is never charged as writable memory.)"""
    return area.prot | (PROT_READ | PROT_WRITE if area.runs else 0)


MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2


def _map(area, addr):
    if area.inherit:                 # one object for the tree (tree_shmem): map the same pages
        if area.flags & hugetlb.MAP_HUGETLB:
            got = _map_inherited_file(area, addr)
        else:
            got = _syscall(NR.mremap, area.inherit, 0, area.length, MREMAP_MAYMOVE | MREMAP_FIXED, addr,
                           what=lambda: f"map the shared object of the VMA at {area.start:#x}")
        if got != addr:
            raise RestoreError(f"premap of the VMA at {area.start:#x} landed at {got:#x}")
        _madvise(area, addr, _BEFORE_FILL)
        return
    if area.cow_src:                 # the parent's copy, inherited by fork (crpy.dump.tree_cow)
        _map_cow(area, addr)
        return
    fd = -1
    try:
        if area.kind == "anon":
            flags = _anon_type(area) | MAP_ANONYMOUS | (area.flags & _ANON_FLAGS)
        elif area.kind == "aio":     # the saved ring, read by the blob's aio step (restorer.c)
            flags = MAP_PRIVATE | MAP_ANONYMOUS
        elif area.kind == "anon_shared":
            flags = MAP_SHARED | MAP_ANONYMOUS | (area.flags & (MAP_NORESERVE | _HUGE_FLAGS))
        else:
            shared = area.kind == "file_shared"
            fd = _open(area.path, _file_mode(area, shared))
            flags = MAP_SHARED if shared else MAP_PRIVATE
        got = _syscall(NR.mmap, addr, area.length, _fill_prot(area), flags | MAP_FIXED, fd,
                       area.pgoff if fd >= 0 else 0, what=lambda: f"premap the VMA at {area.start:#x}")
        if got != addr:
            raise RestoreError(f"premap of the VMA at {area.start:#x} landed at {got:#x}")
        _madvise(area, addr, _BEFORE_FILL)
        log.debug("premap %#x-%#x %s at %#x (%d runs, %d bytes)", area.start, area.end, area.kind, addr,
                  len(area.runs), sum(r[1] for r in area.runs))
    finally:
        if fd >= 0:
            os.close(fd)


def _map_inherited_file(area, addr):
    """mremap cannot map hugetlb pages a second time (old_size 0): map the inherited object's
    hugetlbfs file (through /proc/self/map_files) at the VMA's offset instead: the same object,
    and the same /anon_hugepage VMA as MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB makes."""
    start, end = area.inherit_span
    fd = _open(f"/proc/self/map_files/{start:x}-{end:x}", os.O_RDWR)
    try:
        return _syscall(NR.mmap, addr, area.length, _fill_prot(area),
                        MAP_SHARED | MAP_FIXED | (area.flags & MAP_NORESERVE), fd, area.pgoff,
                        what=lambda: f"map the shared hugetlb object of the VMA at {area.start:#x}")
    finally:
        os.close(fd)


def _anon_type(area):
    """MAP_PRIVATE, or MAP_DROPPABLE (Linux 6.11+: the load step checked that this kernel has it)."""
    return MAP_DROPPABLE if area.flags & MAP_TYPE == MAP_DROPPABLE else MAP_PRIVATE


def droppable_supported():
    """Does this kernel know MAP_DROPPABLE?  (mmap says EINVAL when not.)"""
    import mmap

    try:
        mmap.mmap(-1, PAGE, flags=MAP_DROPPABLE | MAP_ANONYMOUS).close()
        return True
    except OSError:
        return False


def _file_mode(area, shared):
    """The mapped file's open mode at dump time (vma_entry.fdflags): it decides whether a shared
    mapping may later be made writable.  Images without it: writable if mapped writable."""
    if area.fdflags is not None:
        return area.fdflags & os.O_ACCMODE
    return os.O_RDWR if shared and area.prot & PROT_WRITE else os.O_RDONLY


MADV_DONTNEED = 4


def _map_cow(area, addr):
    """Move the parent's premapped copy of the area (COW-shared with it since the fork) to this
    task's slot; pages the parent holds but this task had not are dropped (zero again), and the
    pages this task changed are read over it by fill()."""
    got = _syscall(NR.mremap, area.cow_src, area.length, area.length, MREMAP_MAYMOVE | MREMAP_FIXED,
                   addr, what=lambda: f"take the parent's pages of the VMA at {area.start:#x}")
    if got != addr:
        raise RestoreError(f"premap of the VMA at {area.start:#x} landed at {got:#x}")
    _syscall(NR.mprotect, addr, area.length, _fill_prot(area),
             what=lambda: f"mprotect the VMA at {area.start:#x}")
    for off, n in _gaps(area.length, [(r[0], r[1]) for r in area.runs] + area.cow_runs):
        _syscall(NR.madvise, addr + off, n, MADV_DONTNEED, what=lambda: f"zero pages at {area.start + off:#x}")
    _madvise(area, addr, _BEFORE_FILL)


def _gaps(length, pieces):
    """The parts of [0, length) no piece covers."""
    out, pos = [], 0
    for off, n in sorted(pieces):
        if off > pos:
            out.append((pos, off - pos))
        pos = max(pos, off + n)
    if pos < length:
        out.append((pos, length - pos))
    return out


def _protect(area, addr):
    if area.pkey:
        _ensure_pkey(area.pkey)
        _syscall(NR_PKEY_MPROTECT, addr, area.length, area.prot, area.pkey,
                 what=lambda: f"pkey_mprotect the VMA at {area.start:#x} (key {area.pkey})")
    elif _fill_prot(area) != area.prot or area.inherit or area.cow_src:
        _syscall(NR.mprotect, addr, area.length, area.prot, what=lambda: f"mprotect the VMA at {area.start:#x}")
    _madvise(area, addr, _AFTER_FILL)
    if area.flags & MAP_LOCKED:
        sys_call(NR_MLOCK, addr, area.length, what=f"mlock the VMA at {area.start:#x}")


_pkeys = set()


def _ensure_pkey(key):
    """Allocate protection keys until `key` is ours (pkey_alloc hands out the lowest free one;
    the mm, and so the allocation, carries over to the restored task).  The task's own PKRU
    comes back with its XSAVE state in the signal frame."""
    while key not in _pkeys:
        got = _syscall(NR_PKEY_ALLOC, 0, 0, what=lambda: f"pkey_alloc (for key {key})")
        if got > key:
            raise RestoreError(f"protection key {key} is not free (pkey_alloc gave {got})")
        _pkeys.add(got)


def _open(path, mode):
    try:
        return os.open(path, mode | os.O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"open {path} to map it: {os.strerror(e.errno)}") from None


def _madvise(area, addr, advices):
    """The VMA's advice (THP, fork, core dump, KSM): smaps VmFlags must come back as they were, so
    one this kernel refuses (no KSM, say) fails the restore rather than leave a different VMA."""
    if not area.madv:
        return
    for adv in advices:
        if area.madv & (1 << adv):
            _syscall(NR.madvise, addr, area.length, adv,
                     what=lambda: f"madvise({adv}) the VMA at {area.start:#x} as it was at dump time")


_pages_fds = {}


def _pages_fd(path):
    fd = _pages_fds.get(path)
    if fd is None:
        fd = _pages_fds[path] = _open(path, os.O_RDONLY)
    return fd


def close_pages():
    while _pages_fds:
        os.close(_pages_fds.popitem()[1])


MADV_POPULATE_WRITE = 23            # Linux 5.14: allocate the pages of a range in one call
FILL_THREADS = 2                    # the machines have 2 cores; page faults of one mm scale
_PARALLEL_MIN = 64 << 20            # below this, a second thread costs more than it saves


def fill(slots, checks=None):
    """Read every run into place.  Runs that follow each other in a pages image are read by one
    preadv with one iovec per run (up to CHUNK bytes and IOV_MAX iovecs), so a fragmented
    address space costs few syscalls.  Big fills are read by FILL_THREADS threads at once
    (preadv releases the GIL; the time goes into page faults and copies, which run in
    parallel)."""
    batches = list(_batches(slots))
    for path in {b[0] for b in batches}:          # opened here: the threads only read the dict
        _pages_fd(path)
    total = sum(n for _, _, iovs, _ in batches for _, n in iovs)
    threads = FILL_THREADS if total >= _PARALLEL_MIN and (os.cpu_count() or 1) > 1 else 1
    hashed = None
    if checks:
        from crpy.restore import pagecheck

        hashed = pagecheck.Parts()
    if threads == 1:
        _fill_batches(batches, checks, hashed)
    else:
        _fill_parallel(batches, threads, checks, hashed)
    log.debug("read %d bytes of pages", total)
    if checks:
        pagecheck.verify(checks, hashed)
    return total


def _fill_parallel(batches, threads, checks, hashed):
    """The threads take the batches in turn from one iterator (its next() is atomic under the
    GIL), so one that runs slower takes fewer: halves cut in advance left one thread reading
    alone for a third of a GiB's fill (190 against 290 ms, the main thread the slower)."""
    import threading

    errors = []
    queue = iter(batches)

    def run():
        try:
            _fill_batches(queue, checks, hashed)
        except BaseException as e:  # noqa: BLE001 - raised below, in the task's thread
            errors.append(e)

    helpers = [threading.Thread(target=run, name="crpy-fill") for _ in range(threads - 1)]
    for t in helpers:
        t.start()
    run()
    from crpy.kernel.clone import join_before_fork

    for t in helpers:
        join_before_fork(t)                 # a tree's task forks its children next
    if errors:
        raise errors[0]


def _fill_batches(batches, checks=None, hashed=None):
    for path, offset, iovs, populate in batches:
        fd = _pages_fd(path)
        check = checks.get(path) if checks else None
        if check is not None or populate:
            _read_pieces(fd, path, offset, iovs, populate, check, hashed)
            continue
        want = sum(n for _, n in iovs)
        got = os.preadv(fd, [(ctypes.c_char * n).from_address(a) for a, n in iovs], offset)
        if got < want:
            _finish_short(fd, path, offset, iovs, got)


PIECE = 1 << 20                     # the parts an unchecked read is counted in (its pieces: 21_pread_crc.c)


def _read_pieces(fd, path, offset, iovs, populate, check, hashed):
    """Read a batch a piece at a time (crpy.kernel.crc32c.pread_crc): each piece of anonymous
    memory populated right before its read (one call allocates what preadv would fault in page
    by page), and, where this task checks the image, hashed while in the cache (pagecheck
    verifies the digests)."""
    from crpy.kernel.crc32c import pread_crc

    chunk_size = check[0] if check is not None else PIECE
    try:
        crcs = pread_crc(fd, iovs, offset, chunk_size, populate=populate, hashed=check is not None)
    except OSError as e:
        want = sum(n for _, n in iovs)
        why = "short read (the image ends first)" if e.errno == errno.EIO else e.strerror
        raise RestoreError(f"{path}: cannot read {want} bytes at offset {offset}: {why}") from None
    if check is not None:
        hashed.add(path, offset, sum(n for _, n in iovs), chunk_size, crcs)


def _batches(slots):
    """(pages path, file offset, [(address, length)], populate first) batches in file order.
    populate: anonymous memory, every byte of which the read overwrites (a private file mapping
    would first read its file only to have it overwritten)."""
    pieces = []
    for slot in slots:
        if slot.area.lazy:           # the lazy-pages daemon serves them (crpy.restore.lazy)
            continue
        populate = slot.area.kind in ("anon", "anon_shared")
        for rel, length, path, off in slot.area.runs:
            for pos in range(0, length, CHUNK):
                pieces.append((path, off + pos, slot.addr + rel + pos, min(CHUNK, length - pos), populate))
    pieces.sort(key=lambda p: (p[0], p[1]))
    batch = None
    for path, off, addr, n, populate in pieces:
        if (batch and batch[0] == path and batch[1] + batch[3] == off and len(batch[2]) < IOV_MAX
                and batch[3] + n <= CHUNK and batch[4] == populate):
            batch[2].append((addr, n))
            batch[3] += n
            continue
        if batch:
            yield batch[0], batch[1], batch[2], batch[4]
        batch = [path, off, [(addr, n)], n, populate]
    if batch:
        yield batch[0], batch[1], batch[2], batch[4]


def _finish_short(fd, path, offset, iovs, got):
    """A preadv may stop early (signals, huge requests): read the rest iovec by iovec."""
    pos = offset
    for addr, n in iovs:
        done = min(max(got - (pos - offset), 0), n)
        while done < n:
            k = os.preadv(fd, [(ctypes.c_char * (n - done)).from_address(addr + done)], pos + done)
            if k <= 0:
                raise RestoreError(f"{path}: short read at offset {pos + done} (memory at {addr + done:#x})")
            done += k
        pos += n
