"""Anonymous shared memory that several tasks of a tree map (MAP_SHARED|MAP_ANONYMOUS, one
shmid in their images) comes back as ONE object: crpy maps it once, shared, before forking the
root, and reads its pages in once; every task inherits the mapping through fork, and premap
gives each task its own view of it with mremap(old_size=0), which maps the same pages again,
at the VMA's own offset in the object.  An object that one VMA maps whole, from offset 0, stays
its task's business (premap maps and fills it); one that a task shrank or mapped in parts is
made here whole, with the pages no VMA shows (an mremap may show them again).

A mapped memfd (memfd.img holds every memfd the tree held open or mapped) is made once here, as
a memfd (crpy.resources.memfd), however many tasks map it: the tasks' fds and mappings are one
inode again, and the maps say /memfd:NAME (deleted) as before the dump.  So is a memfd a task
maps privately or runs as its executable (fexecve): premap and the exe step open it again
through crpy's own fd on it, /proc/CRPY_PID/fd/N, which no task's fd restore can close."""

import mmap
import os

from crpy.log import log
from crpy.resources.shared import highest_wanted_fd

_keep = []                 # (address, size) of the objects: unmapped in crpy only when it exits


def share_objects(nodes):
    """Map and fill every object mapped by two tasks or more; their areas get .inherit (the
    address of their first byte in crpy's, and so every forked task's, mapping)."""
    by_shmid = {}
    for node in nodes:
        for area in node.task.areas if node.task else ():
            if area.kind == "anon_shared":
                by_shmid.setdefault(area.shmid, []).append((node.pid, area))
    images_dir, memfds = _memfd_inodes(nodes)
    above = None                      # the highest fd a task wants: read once, if a memfd needs it
    total = 0
    for shmid, users in sorted(by_shmid.items()):
        if shmid in memfds:
            if above is None:
                above = highest_wanted_fd(images_dir, 2)
            _share_memfd(images_dir, memfds[shmid], [a for _, a in users], above)
            continue
        if len(users) < 2 and users[0][1].whole_object:
            continue
        total += _share(shmid, [a for _, a in users])
    _open_memfd_files(nodes, images_dir, above)
    return total


def _open_memfd_files(nodes, images_dir, above):
    """Every private memfd mapping and memfd exe gets the path of its memfd, made once for all."""
    from crpy.errors import ImageError
    from crpy.resources import memfd

    tasks = [n.task for n in nodes if n.task]
    wanted = [(a, "path", a.memfd) for t in tasks for a in t.areas if a.memfd is not None]
    wanted += [(t, "exe_path", t.exe_memfd) for t in tasks if t.exe_memfd is not None]
    if not wanted:
        return
    inodes = memfd.inodes(images_dir)
    if above is None:
        above = highest_wanted_fd(images_dir, 2)
    for holder, attr, inode_id in wanted:
        if inode_id not in inodes:
            raise ImageError(images_dir, f"memfd inode {inode_id} is not in memfd.img")
        setattr(holder, attr, memfd.made_path(images_dir, inodes[inode_id], above))


def _share(shmid, areas):
    """One object for every mapping of it: its whole size, every page at its object offset."""
    import ctypes

    size = max([a.pgoff + a.length for a in areas] + [a.shmem_size for a in areas])
    base = _map_object(size, areas[0].flags)
    view = memoryview((ctypes.c_char * size).from_address(base)).cast("B")
    nbytes = 0
    for start, length, path, offset in areas[0].object_runs:   # every mapping lists the same pages
        nbytes += _read_into(view[start:start + length], path, offset)
    for area in areas:
        area.runs = []
        area.inherit = base + area.pgoff
        area.inherit_span = (base, base + size)
    log.debug("shared anon object %d: %d bytes at %#x, %d bytes of pages, %d mappings",
              shmid, size, base, nbytes, len(areas))
    return nbytes


def _map_object(size, flags):
    """A new shared anonymous object of `size` bytes mapped in crpy (and so in every task forked
    after): hugetlb memory of the image's page size when the VMA was (MAP_HUGETLB in its flags)."""
    from crpy.kernel import hugetlb
    from crpy.kernel.syscalls import NR, sys_call

    huge = flags & (hugetlb.MAP_HUGETLB | hugetlb.MAP_HUGE_MASK)
    base = sys_call(NR.mmap, 0, size, mmap.PROT_READ | mmap.PROT_WRITE,
                    mmap.MAP_SHARED | mmap.MAP_ANONYMOUS | huge, -1, 0,
                    what=f"map a shared object of {size} bytes" + (" (hugetlb)" if huge else ""))
    _keep.append((base, size))
    return base


def _memfd_inodes(nodes):
    """(images dir, {shmid: memfd_inode_entry}) of the memfds of the dump (open or mapped)."""
    from crpy.resources import memfd

    memfd.forget_made()
    images_dir = next((n.task.images_dir for n in nodes if n.task), None)
    if images_dir is None:
        return None, {}
    return images_dir, {e.shmid: e for e in memfd.inodes(images_dir).values()}


def _share_memfd(images_dir, inode, areas, above):
    """Make the memfd (above `above`, every fd a task wants: inherited until its fds are placed) and map
    it whole in crpy; each area then maps the same pages again (area.inherit), the contents are
    the memfd's."""
    from crpy.kernel.syscalls import NR, sys_call
    from crpy.resources import memfd

    fd = memfd.make_for_maps(images_dir, inode, above)
    size = max(a.pgoff + a.length for a in areas)
    sealed = inode.seals & (memfd.F_SEAL_WRITE | memfd.F_SEAL_FUTURE_WRITE)
    prot = mmap.PROT_READ | (0 if sealed else mmap.PROT_WRITE)
    base = sys_call(NR.mmap, 0, size, prot, mmap.MAP_SHARED, fd, 0, what=f"map memfd {inode.name}")
    for area in areas:
        area.runs = []
        area.inherit = base + area.pgoff
    log.debug("memfd %s (shmid %d): fd %d, mapped at %#x for %d mappings", inode.name, inode.shmid, fd,
              base, len(areas))


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
