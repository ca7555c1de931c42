"""fanotify: dump and restore of a group (its init flags and event_f_flags) with its inode
marks (mask, ignored mask, mark flags); mount and filesystem marks, and groups with events
queued, are refused by name.

As CRIU does, one files.img entry of type FANOTIFY (fanotify_file_entry) per group, from
/proc/PID/fdinfo: "fanotify flags:F event-flags:E", then one line per mark, "fanotify ino:I
sdev:D mflags:M mask:X ignored_mask:Y fhandle-bytes:.. fhandle-type:.. f_handle:.." for an
inode mark (its object kept as a file handle, crpy.resources.fhandle, tried at dump time).

Restore: fanotify_init with the flags (FAN_CLOEXEC among them as the group shows it; the fd's
close-on-exec bit is the fdinfo entry's), then per mark, oldest first, fanotify_mark
(FAN_MARK_ADD) of the mask and, apart, of the ignored mask, on the object opened by handle.
"""

import os
import re

from crpy.errors import RestoreError, UnsupportedResource

O_CLOEXEC = 0o2000000
FAN_MARK_ADD, FAN_MARK_IGNORED_MASK, FAN_MARK_IGNORED_SURV_MODIFY = 0x1, 0x20, 0x40
FAN_MARK_EVICTABLE, FAN_MARK_IGNORE = 0x200, 0x400
_KEPT_MARK_FLAGS = FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE
_NR_FANOTIFY_INIT, _NR_FANOTIFY_MARK = 300, 301
_GROUP = re.compile(r"fanotify flags:\s*([0-9a-f]+)\s+event-flags:\s*([0-9a-f]+)")
_MARK = re.compile(r"fanotify ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)\s+mflags:\s*([0-9a-f]+)\s+mask:\s*([0-9a-f]+)\s+"
                   r"ignored_mask:\s*([0-9a-f]+)\s+fhandle-bytes:\s*([0-9a-f]+)\s+fhandle-type:\s*([0-9a-f]+)\s+"
                   r"f_handle:\s*([0-9a-f]+)")


def parse_fdinfo(text):
    """((flags, event_f_flags), [(ino, sdev, mflags, mask, ignored, hbytes, htype, hex)], other mark
    lines (mount and filesystem marks))."""
    group = _GROUP.search(text)
    marks, others = [], []
    for line in text.splitlines():
        if not line.startswith("fanotify ") or _GROUP.match(line):
            continue
        m = _MARK.match(line)
        if m:
            marks.append((int(m[1], 16), int(m[2], 16), int(m[3], 16), int(m[4], 16), int(m[5], 16),
                          int(m[6], 16), int(m[7], 16), m[8]))
        else:
            others.append(line)
    return (int(group[1], 16), int(group[2], 16)) if group else None, marks, others


def _read(pid, fd):
    from crpy.kernel import proc

    group, marks, others = parse_fdinfo(proc.read_text(pid, f"fdinfo/{fd}"))
    if group is None:
        raise UnsupportedResource(pid, "fanotify", fd, hint="this kernel's fdinfo does not show the group")
    if others:
        raise UnsupportedResource(pid, "fanotify mark", fd, f"'{others[0][9:]}'",
                                  "crpy restores fanotify marks on inodes only, not on mounts or filesystems")
    return group, marks


def check(fdfacts):
    from crpy.resources import fhandle

    pid, fd = fdfacts.pid, fdfacts.fd
    _, marks = _read(pid, fd)
    fhandle.refuse_unless_ready(pid, fd, "fanotify", [
        (f"mark on inode {ino}", nbytes, htype, hex_handle, sdev, ino)
        for ino, sdev, _, _, _, nbytes, htype, hex_handle in marks])


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, fsnotify_pb2
    from crpy.resources import fhandle
    from crpy.resources.regfile import fown

    (faflags, evflags), marks = _read(fdfacts.pid, fdfacts.fd)
    e = fsnotify_pb2.fanotify_file_entry(id=file_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown(),
                                         faflags=faflags, evflags=evflags)
    for ino, sdev, mflags, mask, ignored, nbytes, htype, hex_handle in marks:
        e.mark.add(id=file_id, type=fsnotify_pb2.INODE, mflags=mflags, mask=mask, ignored_mask=ignored,
                   s_dev=sdev, ie=fsnotify_pb2.fanotify_inode_mark_entry(
                       i_ino=ino, f_handle=fhandle.fh_entry(nbytes, htype, hex_handle)))
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.FANOTIFY, id=file_id, ffy=e)


def restore_fd(entry, ctx):
    from crpy.kernel.syscalls import sys_call

    e = entry.ffy
    fd = sys_call(_NR_FANOTIFY_INIT, e.faflags, e.evflags, what="fanotify_init")   # FAN_CLOEXEC shows too
    try:
        for mark in reversed(e.mark):             # fdinfo lists the newest first
            _add_mark(fd, mark)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _add_mark(fd, mark):
    from crpy.errors import CrpyError
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import sys_call
    from crpy.resources import fhandle

    where = f"fanotify mark on inode {mark.ie.i_ino}"
    try:
        obj = fhandle.open_handle(mark.ie.f_handle, mark.s_dev)
    except CrpyError as err:
        raise RestoreError(f"{where}: its object cannot be opened by file handle: {err}") from None
    path = ffi.new("char[]", f"/proc/self/fd/{obj}".encode())
    kept = mark.mflags & _KEPT_MARK_FLAGS
    ignore = FAN_MARK_IGNORE if mark.mflags & FAN_MARK_IGNORE else FAN_MARK_IGNORED_MASK
    try:
        if mark.mask:
            sys_call(_NR_FANOTIFY_MARK, fd, FAN_MARK_ADD | kept, mark.mask, -100, path, what=f"fanotify_mark for {where}")
        if mark.ignored_mask:
            sys_call(_NR_FANOTIFY_MARK, fd, FAN_MARK_ADD | ignore | kept, mark.ignored_mask, -100, path,
                     what=f"fanotify_mark (ignored mask) for {where}")
    finally:
        os.close(obj)
