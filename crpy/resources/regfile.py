"""Regular files, directories and character devices such as /dev/null: dump and restore.

As CRIU does, all of them are REG entries of files.img (reg_file_entry): path, open flags (without
O_CLOEXEC, which lives in the fdinfo entry), offset, and size and mode so a restore can tell the
file is still the one that was dumped.  Device nodes also carry their device number (crpy's
extension field rdev, 1000) so /dev/null cannot silently come back as some other device.  An
O_PATH|O_NOFOLLOW fd on a symlink holds the symlink itself: reopened with those flags, and the
link's target (crpy's field symlink_target, 1001) must be the same as at dump time.
"""

import os
import stat as _stat

from crpy.errors import RestoreError

O_CLOEXEC = 0o2000000
O_PATH = 0o10000000
_O_TMPFILE = 0o20000000           # the kernel's __O_TMPFILE bit (O_TMPFILE = it | O_DIRECTORY)
# Flags that must not be replayed when the file is opened again.
_NOT_REPLAYED = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY | O_CLOEXEC | _O_TMPFILE


def fown():
    from crpy.images.pb import fown_pb2

    return fown_pb2.fown_entry(uid=0, euid=0, signum=0, pid_type=0, pid=0)


def reg_entry(file_id, path, st, flags=0, pos=0, symlink_target=None):
    """The reg_file_entry for `path` whose os.stat is `st` (a symlink: with its target)."""
    from crpy.images.pb import regfile_pb2

    e = regfile_pb2.reg_file_entry(id=file_id, flags=flags & ~O_CLOEXEC, pos=pos, fown=fown(),
                                   name=path, mode=st.st_mode)
    if _stat.S_ISREG(st.st_mode):
        e.size = st.st_size
    if _stat.S_ISCHR(st.st_mode) or _stat.S_ISBLK(st.st_mode):
        e.rdev = st.st_rdev                  # crpy extension (field 1000)
    if symlink_target is not None:
        e.symlink_target = symlink_target    # crpy extension (field 1001)
    return e


def file_entry(file_id, path, st, flags=0, pos=0, symlink_target=None):
    """A files.img entry (type REG) wrapping reg_entry()."""
    from crpy.images.pb import fdinfo_pb2

    return fdinfo_pb2.file_entry(type=fdinfo_pb2.REG, id=file_id,
                                 reg=reg_entry(file_id, path, st, flags, pos, symlink_target))


def dump_fd(fdfacts, file_id, files=None):
    """files.img entry of an open fd (FdFacts of crpy.resources.fdtable)."""
    return file_entry(file_id, fdfacts.target, fdfacts.st, fdfacts.info.flags, fdfacts.info.pos,
                      symlink_target_of(fdfacts))


def symlink_target_of(fdfacts):
    """Where the symlink an O_PATH|O_NOFOLLOW fd holds points (read through a copy of the
    task's own fd, so a renamed or unlinked link is read too); None for any other file."""
    from crpy.resources import taskfd

    if not _stat.S_ISLNK(fdfacts.st.st_mode):
        return None
    with taskfd.grabbed(fdfacts.pid, fdfacts.fd) as fd:
        return os.readlink("", dir_fd=fd)


# ---------------------------------------------------------------- restore side

def check_same_file(reg, st, fd=None):
    """RestoreError unless the file opened now (as fd, when given) is the kind and size of the
    dumped one."""
    name = reg.name
    if reg.HasField("mode") and _stat.S_IFMT(st.st_mode) != _stat.S_IFMT(reg.mode):
        raise RestoreError(f"{name}: is now of file type {_stat.S_IFMT(st.st_mode):o}, was "
                           f"{_stat.S_IFMT(reg.mode):o} at dump time",
                           "the file was replaced since the dump")
    if reg.HasField("mode") and _stat.S_IMODE(st.st_mode) != _stat.S_IMODE(reg.mode):
        raise RestoreError(f"{name}: mode is now {_stat.S_IMODE(st.st_mode):o}, was "
                           f"{_stat.S_IMODE(reg.mode):o} at dump time", "the file changed since the dump")
    if _stat.S_ISREG(st.st_mode) and reg.HasField("size") and st.st_size != reg.size:
        raise RestoreError(f"{name}: size is now {st.st_size}, was {reg.size} at dump time",
                           "the file changed since the dump")
    if reg.HasField("symlink_target") and fd is not None and os.readlink("", dir_fd=fd) != reg.symlink_target:
        raise RestoreError(f"{name}: symlink to {os.readlink('', dir_fd=fd)}, was to {reg.symlink_target} at dump time",
                           "the symlink changed since the dump")
    if reg.HasField("rdev") and reg.rdev != st.st_rdev:
        want = reg.rdev
        raise RestoreError(f"{name}: is device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, was "
                           f"{os.major(want)}:{os.minor(want)} at dump time",
                           "the device node was replaced since the dump")


def open_reg(reg, flags=None, path=None):
    """Open the file of a reg_file_entry (at `path` if given) as it was (flags, offset), checked;
    returns the fd (close-on-exec, at whatever number the kernel picks)."""
    flags = reg.flags if flags is None else flags
    if flags & _O_TMPFILE:                # an O_TMPFILE file is a file: reopen it, make none
        flags &= ~os.O_DIRECTORY
    try:
        fd = os.open(path or reg.name, (flags & ~_NOT_REPLAYED) | O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"cannot open {reg.name}: {e.strerror}",
                           "the file must exist at the same path as at dump time") from None
    try:
        check_same_file(reg, os.fstat(fd), fd)
        if reg.pos and not flags & O_PATH:
            os.lseek(fd, reg.pos, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def restore_fd(file_entry, ctx=None):
    """An fd for a files.img entry of this kind (the fd table moves it into place); an entry
    remapped to a ghost file (remap-fpath.img) is opened through the ghost."""
    if ctx is not None:
        from crpy.resources import ghost

        path = ghost.restored_path(ctx, file_entry.id)
        if path is not None:
            return open_reg(file_entry.reg, path=path)
    return open_reg(file_entry.reg)
