"""inotify: dump and restore of every watch (wd number, mask, watched object), refused while
events are queued.

As CRIU does, one files.img entry of type INOTIFY (inotify_file_entry) per group, a
inotify_wd_entry per watch from /proc/PID/fdinfo ("inotify wd:N ino:I sdev:D mask:M
ignored_mask:0 fhandle-bytes:B fhandle-type:T f_handle:HEX"): the watched object is kept as its
file handle (crpy.resources.fhandle), tried at dump time; where the handle cannot be opened
(ramfs and other filesystems whose handles only identify), the object is found by a scan of its
filesystem's mounts (crpy.resources.irmap, as criu's irmap) and its path kept in fh_entry.path;
an object found neither way is refused before the task is touched.  Events already queued cannot be put back into a group:
a group holding some (FIONREAD on crpy's duplicate of the fd) is refused by name.

Restore opens each object by handle (O_PATH) and adds the watch through /proc/self/fd; the
kernel hands out wd numbers in a cycle, so as CRIU does a watch given a lower number than
its own is removed and added again until its number comes (the watches in wd order), and
the IN_IGNORED events that leaves are read off before the group is handed over.
"""

import fcntl
import os
import re

from crpy.errors import RestoreError, UnsupportedResource

O_CLOEXEC = 0o2000000
_NR_INOTIFY_INIT1, _NR_INOTIFY_ADD_WATCH, _NR_INOTIFY_RM_WATCH = 294, 254, 255
_WD = re.compile(r"inotify wd:\s*(\d+)\s+ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)\s+mask:\s*([0-9a-f]+)\s+"
                 r"ignored_mask:\s*([0-9a-f]+)(?:\s+fhandle-bytes:\s*([0-9a-f]+)\s+fhandle-type:\s*([0-9a-f]+)"
                 r"\s+f_handle:\s*([0-9a-f]+))?")


def parse_fdinfo(text):
    """[(wd, ino, sdev, mask, ignored_mask, handle_bytes, handle_type, handle_hex or None)]."""
    return [(int(m[1]), int(m[2], 16), int(m[3], 16), int(m[4], 16), int(m[5], 16),
             int(m[6] or "0", 16), int(m[7] or "0", 16), m[8]) for m in _WD.finditer(text)]


def watches(pid, fd):
    """The watches of the group at fd of task pid; UnsupportedResource for what cannot come back."""
    from crpy.kernel import proc

    out = parse_fdinfo(proc.read_text(pid, f"fdinfo/{fd}"))
    for wd, ino, sdev, *_, hex_handle in out:
        if not hex_handle:
            raise UnsupportedResource(pid, "inotify watch", fd, f"wd {wd} (inode {ino}): the kernel gives no file handle",
                                      "the watched filesystem must support file handles")
    return out


def check(fdfacts):
    from crpy.resources import fhandle

    pid, fd = fdfacts.pid, fdfacts.fd
    fhandle.refuse_unless_ready(pid, fd, "inotify", [
        (f"watch wd {wd} (inode {ino})", nbytes, htype, hex_handle, sdev, ino)
        for wd, ino, sdev, _, _, nbytes, htype, hex_handle in watches(pid, fd)], scan=True)


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, fsnotify_pb2
    from crpy.resources import fhandle
    from crpy.resources.regfile import fown

    e = fsnotify_pb2.inotify_file_entry(id=file_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown())
    for wd, ino, sdev, mask, ignored, nbytes, htype, hex_handle in watches(fdfacts.pid, fdfacts.fd):
        fh = fhandle.fh_entry(nbytes, htype, hex_handle)
        path = _scanned_path(fh, sdev, ino)
        if path is not None:
            fh.path = path
        e.wd.add(id=file_id, i_ino=ino, mask=mask, ignored_mask=ignored, s_dev=sdev, wd=wd, f_handle=fh)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.INOTIFY, id=file_id, ify=e)


def _scanned_path(fh, sdev, ino):
    """The object's path (criu's irmap) when its handle cannot be opened, else None."""
    from crpy.resources import fhandle, irmap

    try:
        os.close(fhandle.open_handle(fh, sdev))
        return None
    except Exception:  # noqa: BLE001 - check() found the object by the scan (or refused it)
        return irmap.find_path(sdev, ino)


def restore_fd(entry, ctx):
    from crpy.kernel.syscalls import sys_call

    e = entry.ify
    fd = sys_call(_NR_INOTIFY_INIT1, O_CLOEXEC | os.O_NONBLOCK, what="inotify_init1")
    try:
        for w in sorted(e.wd, key=lambda w: w.wd):
            _add_watch(fd, w)
        _drain(fd)
        fcntl.fcntl(fd, fcntl.F_SETFL, e.flags & os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _drain(fd):
    """Drop the IN_IGNORED events of the watches removed to reach the right numbers (the group
    had none queued at dump time)."""
    while True:
        try:
            os.read(fd, 65536)
        except BlockingIOError:
            return


def _add_watch(fd, w):
    from crpy.errors import CrpyError
    from crpy.resources import fhandle
    from crpy.kernel.syscalls import sys_call

    where = f"inotify watch wd {w.wd} (inode {w.i_ino})"
    try:
        obj = fhandle.open_handle(w.f_handle, w.s_dev)
    except CrpyError as err:
        if not w.f_handle.HasField("path"):
            raise RestoreError(f"{where}: its object cannot be opened by file handle: {err}") from None
        from crpy.resources import irmap

        try:        # the dump found it by a scan of the mounts (criu's irmap)
            obj = irmap.open_checked(w.f_handle.path, w.s_dev, w.i_ino)
        except RestoreError as e:
            raise RestoreError(f"{where}: neither its file handle ({err}) nor its path: {e}") from None
    from crpy.kernel._sys import ffi

    path = ffi.new("char[]", f"/proc/self/fd/{obj}".encode())
    try:
        while True:
            got = sys_call(_NR_INOTIFY_ADD_WATCH, fd, path, w.mask, what=f"inotify_add_watch for {where}")
            if got == w.wd:
                return
            if got > w.wd:
                raise RestoreError(f"{where}: the kernel gave wd {got}, past it")
            sys_call(_NR_INOTIFY_RM_WATCH, fd, got, what="inotify_rm_watch")
    finally:
        os.close(obj)
