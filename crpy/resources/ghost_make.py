"""The ghosts of a restore on the file system: made before the fork, removed once the tasks
hold them (crpy.resources.ghost decides which ghosts a restore needs).

From a ghost-file-ID.img: a regular file at its old path when that is free, else next to it,
sized with ftruncate first and then given its chunks, so holes stay holes; an O_TMPFILE file
("DIR/#INO") as an O_TMPFILE again, held open by this process and opened by the tasks through
/proc/PID/fd/N, so it is still linkable (its fds, reopened, no longer show the O_TMPFILE bits
in their flags); a directory (mkdir), a FIFO or device node (mknod, the same rdev) or a
symlink (the same target) at its old path exactly, which must be free.  Directories missing above a ghost are made for the time
of the restore.  Owner, then mode (a chown clears the set-id bits, as a write does), then times.
"""

import os
import stat as _stat

from crpy.resources import ghost_janitor

O_CLOEXEC = 0o2000000
_O_TMPFILE = 0o20000000     # the kernel's __O_TMPFILE (O_TMPFILE is it | O_DIRECTORY)

_names = []                 # (path, is a directory) of the ghosts to remove once the tasks hold them
_held_fds = []              # O_TMPFILE ghosts, held open by this process until then
_made_dirs = []             # parent directories made for ghosts, removed after them


def create(items, orig):
    """Make the ghost of `items` (ghost-file-ID.img) for a file once named `orig`; returns the
    path the tasks open it through."""
    from crpy.errors import RestoreError

    head = items[0][0]
    ghost_janitor.ready()
    _make_parents(orig)
    try:
        if _stat.S_ISREG(head.mode):
            # O_TMPFILE's name: the open flags say so only until a reopen through /proc
            if os.path.basename(orig) == f"#{head.ino}":
                fd = os.open(os.path.dirname(orig) or "/", os.O_RDWR | _O_TMPFILE | os.O_DIRECTORY | O_CLOEXEC,
                             0o600)
                _fill(fd, items)
                _set_metadata(head, fd=fd)
                return _hold(fd)
            path = ghost_janitor.make_named([orig, f"{orig}.crpy-ghost.{head.ino}.{os.getpid()}"],
                                            lambda tmp: _make_file(tmp, head, items))
            _names.append((path, False))
            return path
        if _stat.S_IFMT(head.mode) not in _SPECIAL_KINDS:
            raise RestoreError(f"cannot re-create unlinked file {orig}: file type {_stat.S_IFMT(head.mode):o}")
        ghost_janitor.make_named([orig], lambda tmp: _make_special(tmp, head), _stat.S_ISDIR(head.mode))
        _names.append((orig, _stat.S_ISDIR(head.mode)))
        return orig
    except FileExistsError:
        raise RestoreError(f"cannot re-create unlinked {_what(head.mode)} {orig}: the name is taken",
                           "it is re-created at its old path, which must be free at restore") from None
    except OSError as e:
        raise RestoreError(f"cannot re-create unlinked {_what(head.mode)} {orig}: {e.strerror}",
                           "its file system must be writable at restore") from None


# the other kinds of ghost _make_special makes, by what error lines call them
_SPECIAL_KINDS = {_stat.S_IFDIR: "directory", _stat.S_IFIFO: "FIFO", _stat.S_IFCHR: "device",
                  _stat.S_IFBLK: "device", _stat.S_IFLNK: "symlink"}


def _what(mode):
    return _SPECIAL_KINDS.get(_stat.S_IFMT(mode), "file")


def _make_file(path, head, items):
    """A regular ghost at `path` (new), with its contents and metadata."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o600)
    try:
        _fill(fd, items)
        _set_metadata(head, fd=fd)
    finally:
        os.close(fd)


def _make_special(path, head):
    """A directory, symlink, FIFO or device node ghost at `path` (new), with its metadata."""
    if _stat.S_ISDIR(head.mode):
        os.mkdir(path, 0o700)
    elif _stat.S_ISLNK(head.mode):
        os.symlink(head.symlnk_target, path)
    else:
        os.mknod(path, _stat.S_IFMT(head.mode) | 0o600, head.rdev if head.HasField("rdev") else 0)
    _set_metadata(head, path=path)


def _hold(fd):
    """Keep an O_TMPFILE ghost open in this process (it has no name); tasks open it through
    /proc/PID/fd/N, which makes no link (a link would end its O_TMPFILE linkability)."""
    _held_fds.append(fd)
    return f"/proc/{os.getpid()}/fd/{fd}"


def _fill(fd, items):
    """Contents: the whole data after the head, or the size first (holes) and every chunk."""
    head, data = items[0]
    if head.chunks:
        os.ftruncate(fd, head.size)
        for chunk, data in items[1:]:
            _pwrite_all(fd, data, chunk.off)
    else:
        _write_all(fd, data)


def _set_metadata(head, fd=None, path=None):
    """Owner, then mode (chown clears the set-id bits; a write before both), then times."""
    if fd is not None:
        os.fchown(fd, head.uid, head.gid)
        os.fchmod(fd, head.mode & 0o7777)
        if head.HasField("mtim"):
            os.utime(fd, ns=(_ns(head.atim), _ns(head.mtim)))
        return
    os.chown(path, head.uid, head.gid, follow_symlinks=False)
    if not _stat.S_ISLNK(head.mode):          # (a symlink has no mode of its own)
        os.chmod(path, head.mode & 0o7777)
    if head.HasField("mtim"):
        os.utime(path, ns=(_ns(head.atim), _ns(head.mtim)), follow_symlinks=False)


def _make_parents(path):
    """Directories missing above `path` (removed since the file was opened) are made for the
    time of the restore, so the ghost gets its old path again; remove_all() removes them,
    deepest first."""
    parent = os.path.dirname(path)
    missing = []
    while parent and parent != "/" and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        ghost_janitor.make_named([d], lambda tmp: os.mkdir(tmp, 0o700), is_dir=True)
        _made_dirs.append(d)


def remove_all():
    """Remove the ghosts made (files, then the deepest directories first), close the held
    O_TMPFILE ones, then remove the parent directories made for them."""
    for path, is_dir in sorted(_names, key=lambda n: (n[1], -len(n[0]))):
        unlink_quietly(path) if not is_dir else _rmdir(path)
        ghost_janitor.forget(path)
    for fd in _held_fds:
        os.close(fd)
    for d in reversed(_made_dirs):
        _rmdir(d)
        ghost_janitor.forget(d)
    ghost_janitor.stop()
    _names.clear()
    _held_fds.clear()
    _made_dirs.clear()


def _ns(tv):
    return tv.tv_sec * 1_000_000_000 + tv.tv_usec * 1000


def _write_all(fd, data):
    view, off = memoryview(data), 0
    while off < len(data):
        off += os.write(fd, view[off:off + (8 << 20)])


def _pwrite_all(fd, data, offset):
    view, done = memoryview(data), 0
    while done < len(data):
        done += os.pwrite(fd, view[done:done + (8 << 20)], offset + done)


def unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmdir(path):
    from crpy.log import log

    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot remove directory %s made for the restore: %s", path, e.strerror)
