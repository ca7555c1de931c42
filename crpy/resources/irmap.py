"""The path of a watched object whose file handle cannot be opened again, found as criu's irmap
finds it: by a scan of the mounts of its filesystem for its inode number.

Some filesystems (ramfs, and others without export operations) give inotify a file handle that
only identifies the inode (a "FID", type 0x81 here) and that open_by_handle_at refuses (ESTALE).
Such an object is found by walking each mount of its device (never into another filesystem, not
following symlinks) until an entry with its inode number turns up; the path goes into the
image's fh_entry.path (criu's field 4) and restore opens it when the handle fails, checking that
it is still the same inode.  The walk stops after SCAN_LIMIT entries: the object is then refused
at dump time by name, as before.  Results are kept for the dump (check and dump ask twice).

    find_path(sdev, ino) -> absolute path or None
    open_checked(path, sdev, ino) -> O_PATH fd of path, if it still is that inode (else RestoreError)
"""

import os

SCAN_LIMIT = 200000                # directory entries looked at per object at most
O_PATH = 0o10000000

_found = {}                        # (sdev, ino) -> path or None


def find_path(sdev, ino):
    """A path of inode ino on the filesystem sdev, or None if the scan does not meet it."""
    key = (sdev, ino)
    if key not in _found:
        _found[key] = _scan(sdev, ino)
    return _found[key]


def _scan(sdev, ino):
    from crpy.log import log
    from crpy.resources.fhandle import kernel_dev, mounts_of

    dev, budget = kernel_dev(sdev), SCAN_LIMIT
    for top in sorted(set(mounts_of(sdev)), key=len):
        try:
            if os.lstat(top).st_ino == ino:
                return top
        except OSError:
            continue
        todo = [top]
        while todo and budget > 0:
            d = todo.pop()
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            budget -= len(entries)
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != dev:
                    continue                # another filesystem mounted here
                if st.st_ino == ino:
                    log.debug("irmap: inode %d of device %#x is %s", ino, sdev, e.path)
                    return e.path
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
    log.debug("irmap: inode %d of device %#x not found (%d entries looked at)", ino, sdev, SCAN_LIMIT - budget)
    return None


def open_checked(path, sdev, ino):
    """An O_PATH fd of path, which must still be inode ino of the filesystem sdev."""
    from crpy.errors import RestoreError
    from crpy.resources.fhandle import kernel_dev

    try:
        fd = os.open(path, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"{path}: {os.strerror(e.errno)}") from None
    st = os.fstat(fd)
    if st.st_ino != ino or st.st_dev != kernel_dev(sdev):
        os.close(fd)
        raise RestoreError(f"{path} is inode {st.st_ino} of device {st.st_dev:#x} now, not inode {ino}")
    return fd
