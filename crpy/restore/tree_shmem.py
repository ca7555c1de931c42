"""Anonymous shared memory that several tasks of a tree map (MAP_SHARED|MAP_ANONYMOUS, one
shmid in their images) comes back as ONE object: crpy maps it once, shared, before forking the
root, and reads its pages in once; every task inherits the mapping through fork, and premap
gives each task its own view of it with mremap(old_size=0), which maps the same pages again.
An object only one task maps stays that task's business (premap maps and fills it)."""

import mmap
import os

from crpy.log import log

_keep = []                 # the mmap objects: unmapped in crpy only when it exits


def share_objects(nodes):
    """Map and fill every object mapped by two tasks or more; their areas get .inherit (the
    address of their first byte in crpy's, and so every forked task's, mapping)."""
    by_shmid = {}
    for node in nodes:
        for area in node.task.areas if node.task else ():
            if area.kind == "anon_shared":
                by_shmid.setdefault(area.shmid, []).append((node.pid, area))
    total = 0
    for shmid, users in sorted(by_shmid.items()):
        if len({pid for pid, _ in users}) < 2:
            continue
        total += _share(shmid, [a for _, a in users])
    return total


def _share(shmid, areas):
    import ctypes

    size = max(a.pgoff + a.length for a in areas)
    obj = mmap.mmap(-1, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    _keep.append(obj)
    base = ctypes.addressof(ctypes.c_char.from_buffer(obj))
    view = memoryview(obj)
    done, nbytes = set(), 0
    for area in areas:
        for rel, length, path, offset in area.runs:
            start = area.pgoff + rel
            if (start, length) in done:
                continue                 # every task's images list the same pages
            done.add((start, length))
            nbytes += _read_into(view[start:start + length], path, offset)
        area.runs = []
        area.inherit = base + area.pgoff
    log.debug("shared anon object %d: %d bytes at %#x, %d bytes of pages, %d mappings",
              shmid, size, base, nbytes, len(areas))
    return nbytes


def _read_into(buf, path, offset):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        got = os.preadv(fd, [buf], offset)
    finally:
        os.close(fd)
    if got != len(buf):
        from crpy.errors import ImageError

        raise ImageError(path, f"{len(buf)} bytes wanted at offset {offset}, {got} there")
    return got
