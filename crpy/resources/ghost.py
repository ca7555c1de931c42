"""Open files that were unlinked: their contents go into the images as CRIU's ghost files.

Dump: the fd's REG entry keeps the file's original path (without " (deleted)"); remap-fpath.img
maps its id to a ghost (remap_type GHOST, remap_id = the ghost's id) and ghost-file-ID.img holds
a ghost_file_entry (mode, owner, size, times, rdev).  A regular file's contents follow, read
through /proc/PID/fd/N: from 12 KiB on (CRIU's threshold) as chunks, one ghost_chunk_entry
(off, len) and its bytes per data extent (SEEK_DATA/SEEK_HOLE), so holes stay holes and a sparse
1 GiB file costs only its data.  Directories, FIFOs and character devices carry no contents;
a symlink (held by an O_PATH|O_NOFOLLOW fd) carries its target (symlnk_target).
One ghost per inode, whatever number of fds (in whatever tasks) hold it.  A regular ghost larger
than --ghost-limit (criu's, 1 MiB by default) is refused before the task is touched.
Restore: the restore's parent creates each ghost once, before any task is forked: a file at its
old path when that is free, else next to it (ftruncate to its size, then its chunks); a
directory (mkdir), FIFO or device node (mknod) at its old path exactly; an O_TMPFILE file
("/dir/#INO") as an O_TMPFILE again, held open by the parent and opened through /proc, so it
is still linkable (its fds, reopened, no longer show the O_TMPFILE bits in their flags).  Missing parent directories are made for the time of the restore.  Owner,
then mode (chown clears set-id bits), then times.  Every task opens its fds and maps its
mappings through the ghost, and the parent removes it once all tasks stand ready, leaving
open, unlinked files, one inode per ghost, with the same contents, size, holes and mode.

--link-remap: a file unlinked under one name but still linked under another (nlink > 0) gets a
temporary name `<old name>.crpy-link-remap.<ino>` instead of a copy.  The dump notes every link
it made; a dump that fails removes them (remove_links_made), one that works leaves them for the
restore, which opens the fds through them and removes them once the tasks run.
"""

import contextlib
import os
import stat as _stat

from crpy.resources import ghost_janitor

O_CLOEXEC = 0o2000000
_DELETED = " (deleted)"


def original_path(target):
    return target[:-len(_DELETED)] if target.endswith(_DELETED) else target


def dump_fd(fdfacts, file_id, files):
    from crpy import resources
    from crpy.images.pb import remap_file_path_pb2 as rp
    from crpy.resources import regfile

    st, orig = fdfacts.st, original_path(fdfacts.target)
    target = regfile.symlink_target_of(fdfacts)
    linked = None
    if resources.allowed("link_remap") and st.st_nlink > 0:
        linked = files.once(("linked", st.st_dev, st.st_ino),
                            lambda: _link_back(fdfacts.pid, fdfacts.fd, orig, st, file_id, files))
    if linked is not None:
        _remap(files, file_id, linked, rp.LINKED)
    else:
        source = f"/proc/{fdfacts.pid}/fd/{fdfacts.fd}"
        ghost_id = files.once(("ghost", st.st_dev, st.st_ino),
                              lambda: _dump_ghost(source, st, file_id, files, target))
        _remap(files, file_id, ghost_id, rp.GHOST)
    return regfile.file_entry(file_id, orig, st, fdfacts.info.flags, fdfacts.info.pos, target)


def mapped_entry(file_id, path, st, source, files):
    """files.img entry of a mapped file unlinked since: a ghost read through `source`
    (/proc/PID/map_files/START-END), shared with any fd on the same inode."""
    from crpy.images.pb import remap_file_path_pb2 as rp
    from crpy.resources import regfile

    ghost_id = files.once(("ghost", st.st_dev, st.st_ino), lambda: _dump_ghost(source, st, file_id, files))
    _remap(files, file_id, ghost_id, rp.GHOST)
    return regfile.file_entry(file_id, original_path(path), st)


def _remap(files, file_id, remap_id, remap_type):
    from crpy.images.pb import remap_file_path_pb2 as rp

    files.plain("remap_fpath", rp.remap_file_path_entry(orig_id=file_id, remap_id=remap_id,
                                                        remap_type=remap_type))


def _link_back(pid, fd, orig, st, file_id, files):
    """--link-remap: a file unlinked under this name but still linked elsewhere (nlink > 0) gets
    a name again next to its old one until the restore (the kernel links no file with nlink 0:
    those stay ghosts).  Returns the files.img id of the link, or None when it cannot be made."""
    from crpy.log import log
    from crpy.resources import regfile

    link = f"{orig}.crpy-link-remap.{st.st_ino}"
    ghost_janitor.made(link, st=st)           # removed even if this dump is SIGKILLed, if it is this file
    try:
        _link_following(f"/proc/{pid}/fd/{fd}", link)
    except OSError as e:
        ghost_janitor.forget(link)
        log.info("cannot link %s back (%s): its contents go into the images", orig, e.strerror)
        return None
    _links_made.append(link)
    log.info("linked %s back as %s until the restore", orig, link)
    return files.add(lambda fid: regfile.file_entry(fid, link, st))


_links_made = []            # --link-remap links this dump has made (removed if the dump fails)


@contextlib.contextmanager
def links_removed_on_failure():
    """Around a dump: the links it makes stay if it works (the restore needs them) and are
    removed if it fails in any way (an error, Ctrl-C, a fault point), so the file system is left
    as it was; if the dumper is killed outright (SIGKILL), the ghosts' janitor removes them."""
    _links_made.clear()
    try:
        yield
    except BaseException:
        remove_links_made()
        raise
    finally:
        for link in _links_made:              # removed above, or kept by a dump that worked
            ghost_janitor.forget(link)
        ghost_janitor.stop()
        _links_made.clear()


def remove_links_made():
    from crpy.log import log

    for link in _links_made:
        log.info("removing %s: the dump failed", link)
        _unlink(link)


GHOST_CHUNKS_FROM = 3 * 4096    # CRIU's threshold: smaller files go whole after the head


def _dump_ghost(source, st, ghost_id, files, symlink_target=None):
    from crpy.images import framing
    from crpy.images.pb import ghost_file_pb2, time_pb2

    head = ghost_file_pb2.ghost_file_entry(
        uid=st.st_uid, gid=st.st_gid, mode=st.st_mode, dev=st.st_dev & 0xFFFFFFFF, ino=st.st_ino,
        atim=time_pb2.timeval(tv_sec=int(st.st_atime), tv_usec=st.st_atime_ns // 1000 % 1000000),
        mtim=time_pb2.timeval(tv_sec=int(st.st_mtime), tv_usec=st.st_mtime_ns // 1000 % 1000000))
    items = [(head, b"")]
    if _stat.S_ISCHR(st.st_mode) or _stat.S_ISBLK(st.st_mode):
        head.rdev = st.st_rdev & 0xFFFFFFFF
    elif symlink_target is not None:
        head.symlnk_target = symlink_target
    elif _stat.S_ISREG(st.st_mode):           # (never open a FIFO or a device to read it)
        with open(source, "rb", buffering=0, opener=_ro_opener) as f:
            if st.st_size >= GHOST_CHUNKS_FROM:
                head.chunks, head.size = True, st.st_size
                items += [(ghost_file_pb2.ghost_chunk_entry(off=off, len=len(data)), data)
                          for off, data in _data_extents(f.fileno(), st.st_size)]
            else:
                data = f.read()
                head.size, items = len(data), [(head, data)]
    framing.write_payload_image(framing.image_path(files.images_dir, "ghost_file", ghost_id),
                                "ghost_file", items)
    return ghost_id


def _data_extents(fd, size):
    """(offset, bytes) of every data extent of the first `size` bytes (holes are skipped; a file
    system without SEEK_DATA gives the whole file as one extent)."""
    import errno

    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:        # only a hole up to the end
                return
            if pos or e.errno != errno.EINVAL:
                raise
            start, end = 0, size
        else:
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, _pread_all(fd, end - start, start)
        pos = end


def _pread_all(fd, length, offset):
    parts = []
    while length > 0:
        part = os.pread(fd, min(length, 64 << 20), offset)
        if not part:
            raise OSError(0, f"unlinked file shrank while read at {offset}")
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)


def refuse_uncopyable(pid, fds, mapped):
    """Before the task is touched: --ghost-limit (criu's): a regular file whose contents would
    go into the images and whose size is above the limit stops the dump; so does a write lease
    on one (reading it would break the lease).  fds: FdFacts; mapped: [(what, os.stat_result)]
    of unlinked mapped files."""
    from crpy import resources
    from crpy.errors import UnsupportedResource
    from crpy.resources.locks import FL_LEASE

    limit = resources.setting("ghost_limit")
    for f in fds:
        if f.kind != "ghost" or not _copied(f.st):
            continue
        if f.st.st_size > limit:
            raise UnsupportedResource(pid, f"unlinked file of {f.st.st_size} bytes", f.fd, f.target,
                                      _limit_hint(limit, f.st))
        if any(flag == FL_LEASE and typ == 1 for flag, typ, *_ in f.locks):
            raise UnsupportedResource(pid, "write lease on an unlinked file", f.fd, f.target,
                                      "copying its contents would break the lease; release it before the dump")
    for what, st in mapped:
        if _copied(st) and st.st_size > limit:
            raise UnsupportedResource(pid, f"unlinked mapped file of {st.st_size} bytes", target=what,
                                      hint=_limit_hint(limit, st))


def _copied(st):
    """Would the dump copy this unlinked file into the images (not link it back)?"""
    from crpy import resources

    return _stat.S_ISREG(st.st_mode) and not (resources.allowed("link_remap") and st.st_nlink > 0)


def _limit_hint(limit, st):
    hint = f"it is above --ghost-limit ({limit} bytes); dump with --ghost-limit {st.st_size} or more"
    if st.st_nlink > 0:
        hint += ", or with --link-remap (the file still has another name)"
    return hint


def _ro_opener(path, flags):
    return os.open(path, os.O_RDONLY | O_CLOEXEC)


def _link_following(src, dst):
    """linkat(AT_SYMLINK_FOLLOW): the file behind the /proc link (os.link would link the
    link itself, which fails with EXDEV)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.linkat(-100, os.fsencode(src), -100, os.fsencode(dst), 0x400) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), dst)


# ---------------------------------------------------------------- restore side

def _remaps(ctx):
    """{file id: (remap type, remap id)} from remap-fpath.img (read once per restore context)."""
    if "remaps" not in ctx.cache:
        from crpy.images import framing

        path = framing.image_path(ctx.images_dir, "remap_fpath")
        entries = framing.read_image(path, "remap_fpath") if os.path.exists(path) else []
        ctx.cache["remaps"] = {e.orig_id: (e.remap_type, e.remap_id) for e in entries}
    return ctx.cache["remaps"]


def restored_path(ctx, file_id):
    """Path to open files.img entry `file_id` through: the ghost or the --link-remap link, both
    made ready by materialize_all() before any task was forked; None when it is not remapped."""
    from crpy.errors import RestoreError
    from crpy.images.pb import remap_file_path_pb2 as rp

    remap_type, remap_id = _remaps(ctx).get(file_id, (None, None))
    if remap_type == rp.LINKED:
        return ctx.files[remap_id].reg.name
    if remap_type != rp.GHOST:
        return None
    if remap_id not in _materialized:
        raise RestoreError(f"unlinked file {ctx.files[file_id].reg.name} was not re-created before the "
                           "tasks were forked", "restore through crpy restore, which re-creates it")
    return _materialized[remap_id]


def materialize_all(images_dir):
    """For the restore's parent, before any fork: every ghost of remap-fpath.img is created once
    for the whole tree, so tasks that opened the file separately (several open descriptions, in
    one task or in several) get one inode again.  unlink_materialized() removes the ghosts once
    every task has opened and mapped them; the --link-remap links are noted for
    unlink_linked(), after a restore that worked (a failed one keeps them for the next try)."""
    from crpy.images import framing

    if not os.path.exists(framing.image_path(images_dir, "remap_fpath")):
        return                                        # nothing was unlinked at dump time
    from crpy.images.pb import remap_file_path_pb2 as rp   # (only now: start-up of the common case)
    from crpy.resources import ghost_make
    from crpy.resources.fdtable import RestoreContext

    files = {e.id: e for e in framing.read_image(framing.image_path(images_dir, "files"), "files")}
    ctx = RestoreContext(images_dir, files, 0)
    ghosts = {}
    for orig_id, (remap_type, remap_id) in sorted(_remaps(ctx).items()):
        if remap_type == rp.LINKED and remap_id in files:
            _linked.add(files[remap_id].reg.name)
        elif remap_type == rp.GHOST and remap_id not in _materialized and orig_id in files:
            ghosts.setdefault(remap_id, files[orig_id].reg)
    # directories first, parents before children: files and directories may live in them
    heads = {gid: _read_ghost(images_dir, gid) for gid in ghosts}
    order = sorted(ghosts, key=lambda gid: (not _stat.S_ISDIR(heads[gid][0][0].mode), ghosts[gid].name))
    for gid in order:
        _materialized[gid] = ghost_make.create(heads[gid], ghosts[gid].name)


def _read_ghost(images_dir, ghost_id):
    """[(entry, bytes)] of ghost-file-ID.img: the head first, then any chunks."""
    from crpy.images import framing

    return framing.read_payload_image(framing.image_path(images_dir, "ghost_file", ghost_id), "ghost_file")


_materialized = {}          # ghost id -> path made by this crpy restore (for fds and mappings)
_linked = set()             # --link-remap links this restore opens files through
_remaps_read = {}           # images dir -> remap-fpath.img as _remaps() reads it (this restore)


def mapped_path(images_dir, file_id, orig_name):
    """For the restore's loader (parent, before any fork): the path a mapping of files.img entry
    `file_id` (named orig_name) opens.  A ghost is created once, here, and stays until
    unlink_materialized() (all tasks have mapped it); None when the file is not remapped."""
    from crpy.images.pb import remap_file_path_pb2 as rp
    from crpy.resources.fdtable import RestoreContext

    if images_dir not in _remaps_read:          # once per restore, not once per mapped file
        _remaps_read[images_dir] = _remaps(RestoreContext(images_dir, {}, 0))
    remap_type, ghost_id = _remaps_read[images_dir].get(file_id, (None, None))
    if remap_type != rp.GHOST:
        return None
    if ghost_id not in _materialized:
        from crpy.resources import ghost_make

        _materialized[ghost_id] = ghost_make.create(_read_ghost(images_dir, ghost_id), orig_name)
    return _materialized[ghost_id]


def unlink_materialized():
    """Remove the ghosts made by this restore (every task has them open and mapped, or the
    restore failed), then the parent directories made for them."""
    import sys

    if "crpy.resources.ghost_make" not in sys.modules:   # it made nothing: no import for nothing
        _remaps_read.clear()
        return
    from crpy.resources import ghost_make

    ghost_make.remove_all()
    _materialized.clear()
    _remaps_read.clear()


def unlink_linked():
    """Remove the --link-remap links once the restored tasks hold their files (the dump made
    them; after this the file is linked under its other names only, as before the dump)."""
    for path in _linked:
        _unlink(path)
    _linked.clear()


def _unlink(path):
    from crpy.resources import ghost_make

    ghost_make.unlink_quietly(path)
