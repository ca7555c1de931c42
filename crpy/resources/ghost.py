"""Open files that were unlinked: their contents go into the images as CRIU's ghost files.

Dump: the fd's REG entry keeps the file's original path (without " (deleted)"); remap-fpath.img
maps its id to a ghost (remap_type GHOST, remap_id = the ghost's id) and ghost-file-ID.img holds
a ghost_file_entry (mode, owner, size, times) followed by the whole contents, read through
/proc/PID/fd/N.  One ghost per inode, whatever number of fds (in whatever tasks) hold it.
Restore: the restore's parent creates each ghost once, before any task is forked (at its old
path when that is free, else next to it) and fills it; every task opens its fds and maps its
mappings through it, and the parent unlinks it once all tasks stand ready, leaving open,
unlinked files, one inode per ghost, with the same contents.

--link-remap: a file unlinked under one name but still linked under another (nlink > 0) gets a
temporary name `<old name>.crpy-link-remap.<ino>` instead of a copy.  The dump notes every link
it made; a dump that fails removes them (remove_links_made), one that works leaves them for the
restore, which opens the fds through them and removes them once the tasks run.
"""

import contextlib
import os

O_CLOEXEC = 0o2000000
_DELETED = " (deleted)"


def original_path(target):
    return target[:-len(_DELETED)] if target.endswith(_DELETED) else target


def dump_fd(fdfacts, file_id, files):
    from crpy import resources
    from crpy.images.pb import remap_file_path_pb2 as rp
    from crpy.resources import regfile

    st, orig = fdfacts.st, original_path(fdfacts.target)
    linked = None
    if resources.allowed("link_remap") and st.st_nlink > 0:
        linked = files.once(("linked", st.st_dev, st.st_ino),
                            lambda: _link_back(fdfacts.pid, fdfacts.fd, orig, st, file_id, files))
    if linked is not None:
        _remap(files, file_id, linked, rp.LINKED)
    else:
        source = f"/proc/{fdfacts.pid}/fd/{fdfacts.fd}"
        ghost_id = files.once(("ghost", st.st_dev, st.st_ino), lambda: _dump_ghost(source, st, file_id, files))
        _remap(files, file_id, ghost_id, rp.GHOST)
    return regfile.file_entry(file_id, orig, st, fdfacts.info.flags, fdfacts.info.pos)


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
    try:
        _link_following(f"/proc/{pid}/fd/{fd}", link)
    except OSError as e:
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
    as it was.  A dumper killed outright (SIGKILL) cannot remove them."""
    _links_made.clear()
    try:
        yield
    except BaseException:
        remove_links_made()
        raise
    finally:
        _links_made.clear()


def remove_links_made():
    from crpy.log import log

    for link in _links_made:
        log.info("removing %s: the dump failed", link)
        _unlink(link)


def _dump_ghost(source, st, ghost_id, files):
    from crpy.images import framing
    from crpy.images.pb import ghost_file_pb2, time_pb2

    with open(source, "rb", buffering=0, opener=_ro_opener) as f:
        data = f.read()
    head = ghost_file_pb2.ghost_file_entry(
        uid=st.st_uid, gid=st.st_gid, mode=st.st_mode, dev=st.st_dev & 0xFFFFFFFF, ino=st.st_ino,
        atim=time_pb2.timeval(tv_sec=int(st.st_atime), tv_usec=st.st_atime_ns // 1000 % 1000000),
        mtim=time_pb2.timeval(tv_sec=int(st.st_mtime), tv_usec=st.st_mtime_ns // 1000 % 1000000),
        size=len(data))
    framing.write_payload_image(framing.image_path(files.images_dir, "ghost_file", ghost_id),
                                "ghost_file", [(head, data)])
    return ghost_id


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
    from crpy.images.pb import remap_file_path_pb2 as rp
    from crpy.resources.fdtable import RestoreContext

    if not os.path.exists(framing.image_path(images_dir, "remap_fpath")):
        return                                        # nothing was unlinked at dump time
    files = {e.id: e for e in framing.read_image(framing.image_path(images_dir, "files"), "files")}
    ctx = RestoreContext(images_dir, files, 0)
    for orig_id, (remap_type, remap_id) in sorted(_remaps(ctx).items()):
        if remap_type == rp.LINKED and remap_id in files:
            _linked.add(files[remap_id].reg.name)
        elif remap_type == rp.GHOST and remap_id not in _materialized and orig_id in files:
            _materialized[remap_id] = _create_ghost(ctx, remap_id, files[orig_id].reg.name)


def _create_ghost(ctx, ghost_id, orig):
    from crpy.errors import RestoreError
    from crpy.images import framing

    (head, data), = framing.read_payload_image(
        framing.image_path(ctx.images_dir, "ghost_file", ghost_id), "ghost_file")[:1]
    for path in (orig, f"{orig}.crpy-ghost.{ghost_id}.{os.getpid()}"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise RestoreError(f"cannot re-create unlinked file {orig}: {e.strerror}",
                               "its directory must exist and be writable at restore") from None
    else:
        raise RestoreError(f"cannot re-create unlinked file {orig}: names taken")
    try:
        _write_all(fd, data)
        os.fchmod(fd, head.mode & 0o7777)
        os.fchown(fd, head.uid, head.gid)
        if head.HasField("mtim"):
            os.utime(fd, ns=(_ns(head.atim), _ns(head.mtim)))
    finally:
        os.close(fd)
    return path


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
    ctx = RestoreContext(images_dir, {}, 0)
    if ghost_id not in _materialized:
        _materialized[ghost_id] = _create_ghost(ctx, ghost_id, orig_name)
    return _materialized[ghost_id]


def unlink_materialized():
    """Remove the ghosts made by this restore (every task has them open and mapped, or the
    restore failed)."""
    for path in _materialized.values():
        _unlink(path)
    _materialized.clear()
    _remaps_read.clear()


def unlink_linked():
    """Remove the --link-remap links once the restored tasks hold their files (the dump made
    them; after this the file is linked under its other names only, as before the dump)."""
    for path in _linked:
        _unlink(path)
    _linked.clear()


def _ns(tv):
    return tv.tv_sec * 1_000_000_000 + tv.tv_usec * 1000


def _write_all(fd, data):
    view, off = memoryview(data), 0
    while off < len(data):
        off += os.write(fd, view[off:off + (8 << 20)])


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
