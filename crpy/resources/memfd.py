"""memfd files (memfd_create): dump and restore of their fds and of the inode behind them.

As in CRIU 4.x, each open description is a files.img entry of type MEMFD (memfd_file_entry:
flags, offset, inode_id) and each inode, however many fds and tasks hold it, one
memfd_inode_entry in memfd.img (name, size, seals, mode, owner; shmid = the inode number).  The
contents go where CRIU puts them: pagemap-shmem-SHMID.img + a pages-N.img, the images a
MAP_SHARED mapping of the memfd also uses.  They are read through a reopen of /proc/PID/fd/N (a
new description on the same inode: the task's own offset is not moved; offset and flags come
from fdinfo).

Restore makes the inode once (memfd_create with its name, size, contents, mode, owner, seals
last) and opens every description through /proc/self/fd/INODE_FD, with its flags and offset.  A
memfd that tasks also map MAP_SHARED is made by the restore's parent before any fork
(crpy.restore.tree_shmem), so the fds and the mappings of every task are one inode again, and
the maps say /memfd:NAME (deleted) again.
"""

import fcntl
import os

from crpy.errors import RestoreError, UnsupportedResource

PREFIX = "/memfd:"
_DELETED = " (deleted)"
O_CLOEXEC = 0o2000000
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE = 0x1, 0x2, 0x4, 0x8, 0x10
MFD_CLOEXEC, MFD_ALLOW_SEALING = 0x1, 0x2
PROT_WRITE = 2
# Flags that must not be replayed when a description is opened again.
_NOT_REPLAYED = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY | O_CLOEXEC


def name_of(target):
    """memfd_create's name from an fd or map target '/memfd:NAME (deleted)'."""
    name = target[len(PREFIX):] if target.startswith(PREFIX) else target
    return name[:-len(_DELETED)] if name.endswith(_DELETED) else name


_shmem_dev = []


def on_shmem(st):
    """A memfd on the kernel's internal shmem mount (not hugetlbfs, MFD_HUGETLB)."""
    return on_shmem_dev(st.st_dev)


def on_shmem_dev(dev):
    """dev is the kernel's internal shmem mount: compared with the device of a memfd of our own,
    as CRIU does."""
    if not _shmem_dev:
        fd = os.memfd_create("crpy-probe", MFD_CLOEXEC)
        try:
            _shmem_dev.append(os.fstat(fd).st_dev)
        finally:
            os.close(fd)
    return dev == _shmem_dev[0]


# ---------------------------------------------------------------- dump side

def dump_fd(fdfacts, file_id, files):
    """files.img entry of a memfd fd; its inode goes into memfd.img once (the id of the first
    files.img entry met on it is the inode's id)."""
    st = fdfacts.st
    files.once(("memfd-checked", st.st_dev, st.st_ino), lambda: _check_open_and_mapped(fdfacts))
    source = f"/proc/{fdfacts.pid}/fd/{fdfacts.fd}"
    inode_id = files.once(("memfd", st.st_dev, st.st_ino),
                          lambda: _dump_inode(source, name_of(fdfacts.target), file_id, files))
    return _file_entry(file_id, fdfacts.info.flags & ~O_CLOEXEC, fdfacts.info.pos, inode_id)


def note_mapping(pid, vma, files):
    """A mapping of a memfd: the id of its files.img MEMFD entry (the shmid of a private
    mapping, as CRIU writes it; a MAP_SHARED one is dumped as shared memory, shmid = inode)."""
    return mapped_file_id(f"/proc/{pid}/map_files/{vma.start:x}-{vma.end:x}", vma.path,
                          os.makedev(*vma.dev), vma.inode, files)


def note_exe(pid, target, st, files):
    """The exe of a task that runs a memfd (fexecve): the id of its files.img MEMFD entry, for
    mm.exe_file_id, as CRIU writes it."""
    return mapped_file_id(f"/proc/{pid}/exe", target, st.st_dev, st.st_ino, files)


def mapped_file_id(source, target, dev, ino, files):
    """One files.img MEMFD entry per inode for its mappings and the exe (however many tasks),
    and the inode in memfd.img, so the restore makes a memfd with its name again even when no fd
    is left on it.  source: a /proc link to the memfd, read when the images are written."""
    key = (dev, ino)

    def entry(file_id):
        inode_id = files.once(("memfd",) + key, lambda: _dump_inode(source, name_of(target), file_id, files))
        return _file_entry(file_id, os.O_RDWR, 0, inode_id)

    return files.once(("memfd-mapped",) + key, lambda: files.add(entry))


def _file_entry(file_id, flags, pos, inode_id):
    from crpy.images.pb import fdinfo_pb2, memfd_pb2
    from crpy.resources.regfile import fown

    return fdinfo_pb2.file_entry(type=fdinfo_pb2.MEMFD, id=file_id, memfd=memfd_pb2.memfd_file_entry(
        id=file_id, flags=flags, pos=pos, fown=fown(), inode_id=inode_id))


def _check_open_and_mapped(fdfacts):
    from crpy.pagesio import data_pages

    fd = os.open(f"/proc/{fdfacts.pid}/fd/{fdfacts.fd}", os.O_RDONLY | O_CLOEXEC)
    try:
        st = os.fstat(fd)
        _check_mappings(fdfacts, fcntl.fcntl(fd, fcntl.F_GET_SEALS), _mappings(st),
                        data_pages(fd, 0, st.st_size))
    finally:
        os.close(fd)


def _dump_inode(source, name, inode_id, files):
    """memfd.img entry of the memfd behind `source` (an fd or map_files link); its contents go
    into pagemap-shmem unless a mapping's dump wrote them already (crpy.dump.pages)."""
    from crpy.images.pb import memfd_pb2

    fd = os.open(source, os.O_RDONLY | O_CLOEXEC)
    try:
        st = os.fstat(fd)
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        if not _mappings(st):
            _dump_contents(fd, st, files.images_dir, next(files.pages_ids))
    finally:
        os.close(fd)
    files.plain("memfd_inode", memfd_pb2.memfd_inode_entry(
        name=name, uid=st.st_uid, gid=st.st_gid, size=st.st_size, shmid=st.st_ino,
        seals=seals, inode_id=inode_id, mode=st.st_mode))
    return inode_id


def _mappings(st):
    """MAP_SHARED mappings of this memfd in the tasks of the dump: [(pgoff, length, writable)]."""
    from crpy import resources
    from crpy.kernel import proc

    # every live task of the tree (tree_pids), or at least every task whose fds were collected
    pids = set(resources.tree_pids) | set(resources.fd_tables_seen)
    out = []
    for pid in sorted(pids):
        for v in proc.maps(pid, vmflags=False):
            if (v.shared and v.inode == st.st_ino and v.path.startswith(PREFIX)
                    and os.makedev(*v.dev) == st.st_dev):
                out.append((v.pgoff, v.size, bool(v.prot & PROT_WRITE)))
    return out


def _check_mappings(fdfacts, seals, maps, extents):
    """A memfd both open and mapped is saved once, through its mappings (pagemap-shmem): every
    mapping must then hold all of its data (the restore attaches the whole object's pages to
    each mapping), and a writable mapping must still be possible once the seals are back."""
    for pgoff, length, writable in maps:
        if any(s < pgoff or e > pgoff + length for s, e in extents):
            raise UnsupportedResource(fdfacts.pid, "memfd open and mapped only in part", fdfacts.fd,
                                      fdfacts.target, "crpy restores a memfd both open and mapped when "
                                      "each mapping covers all of its data")
        if writable and seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
            raise UnsupportedResource(fdfacts.pid, "memfd write-sealed with a writable mapping", fdfacts.fd,
                                      fdfacts.target, "its mapping could not be made writable again")


def _dump_contents(fd, st, images_dir, pages_id):
    """pagemap-shmem-INO.img + pages-PAGES_ID.img, written as for shared memory."""
    from crpy.pagesio import write_shmem_object

    write_shmem_object(images_dir, fd, st.st_ino, [(0, st.st_size)], pages_id)


# ---------------------------------------------------------------- restore side

_made_for_maps = {}        # inode_id -> fd: made by the restore's parent, inherited by every task


def inodes(images_dir):
    """{inode_id: memfd_inode_entry} of memfd.img ({} without one)."""
    from crpy.images import framing

    path = framing.image_path(images_dir, "memfd_inode")
    if not os.path.exists(path):
        return {}
    return {e.inode_id: e for e in framing.read_image(path, "memfd_inode")}


def restore_fd(entry, ctx):
    """A new description on the entry's memfd inode, with the dumped flags and offset."""
    m = entry.memfd
    inode = _inode_fd(ctx, m.inode_id)
    try:
        fd = os.open(f"/proc/self/fd/{inode}", (m.flags & ~_NOT_REPLAYED) | O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"cannot open memfd inode {m.inode_id} again: {e.strerror}") from None
    try:
        if m.pos:
            os.lseek(fd, m.pos, os.SEEK_SET)
    except OSError as e:
        os.close(fd)
        raise RestoreError(f"memfd inode {m.inode_id}: cannot seek to {m.pos}: {e.strerror}") from None
    return fd


def _inode_fd(ctx, inode_id):
    if inode_id in _made_for_maps:
        return _made_for_maps[inode_id]
    key = ("memfd", inode_id)
    if key not in ctx.cache:
        if "memfd_inodes" not in ctx.cache:
            ctx.cache["memfd_inodes"] = inodes(ctx.images_dir)
        inode = ctx.cache["memfd_inodes"].get(inode_id)
        if inode is None:
            raise RestoreError(f"memfd inode {inode_id} is not in memfd.img")
        ctx.cache[key] = ctx.hold(make_inode(ctx.images_dir, inode))
    return ctx.cache[key]


def make_for_maps(images_dir, inode, above):
    """In the restore's parent, before any fork: the memfd that tasks map (and maybe hold fds
    of), at a number above `above` (every fd a task wants), so each task inherits it until its
    fd restore closes what it does not want."""
    fd = make_inode(images_dir, inode)
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above + 1)
    os.close(fd)
    _made_for_maps[inode.inode_id] = high
    return high


def made_path(images_dir, inode, above):
    """A path that opens the memfd of `inode` again, made for the tree if not yet: crpy's own fd
    on it, which every task can open (premap maps it, the exe step hands it to the restorer)."""
    fd = _made_for_maps.get(inode.inode_id)
    if fd is None:
        fd = make_for_maps(images_dir, inode, above)
    return f"/proc/{os.getpid()}/fd/{fd}"


def forget_made():
    """Close what make_for_maps made for an earlier restore in this process."""
    while _made_for_maps:
        os.close(_made_for_maps.popitem()[1])


def make_inode(images_dir, inode):
    """memfd_create with the inode's name, then size, contents, mode, owner and, last, seals.
    A memfd created without MFD_ALLOW_SEALING carries exactly F_SEAL_SEAL."""
    if inode.HasField("hugetlb_flag") and inode.hugetlb_flag:
        raise RestoreError(f"memfd {inode.name}: hugetlb memfds are not restored yet")
    sealable = inode.seals != F_SEAL_SEAL
    try:
        fd = os.memfd_create(inode.name, MFD_CLOEXEC | (MFD_ALLOW_SEALING if sealable else 0))
    except OSError as e:
        raise RestoreError(f"memfd_create({inode.name!r}): {e.strerror}") from None
    try:
        os.ftruncate(fd, inode.size)
        _fill(fd, images_dir, inode)
        if inode.HasField("mode"):
            os.fchmod(fd, inode.mode & 0o7777)
        os.fchown(fd, inode.uid, inode.gid)
        if sealable and inode.seals:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, inode.seals)
    except OSError as e:
        os.close(fd)
        raise RestoreError(f"memfd {inode.name}: cannot restore its inode: {e.strerror}") from None
    return fd


def _fill(fd, images_dir, inode):
    """Contents from pagemap-shmem-SHMID.img (none: all holes); nothing past the size."""
    from crpy.errors import ImageError
    from crpy.images import framing, pagecodec

    spath = framing.image_path(images_dir, "pagemap_shmem", inode.shmid)
    if not os.path.exists(spath):
        return
    entries = framing.read_image(spath, "pagemap_shmem")
    ppath = framing.image_path(images_dir, "pages", entries[0].pages_id)
    ppath = pagecodec.raw_path(ppath, entries[0])    # compressed (--compress): its decoded copy
    src = os.open(ppath, os.O_RDONLY | O_CLOEXEC)
    try:
        offset = 0
        for e in entries[1:]:
            length = framing.pagemap_nr_pages(e) * 4096
            want = max(min(length, inode.size - e.vaddr), 0)
            done = 0
            while done < want:
                os.lseek(fd, e.vaddr + done, os.SEEK_SET)
                n = os.sendfile(fd, src, offset + done, want - done)
                if n <= 0:
                    raise ImageError(ppath, f"short: memfd {inode.name} wants {want} bytes", offset + done)
                done += n
            offset += length
    finally:
        os.close(src)
