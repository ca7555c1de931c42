"""File handles of watched objects (inotify watches, fanotify marks): as /proc fdinfo shows them,
as CRIU's fh_entry keeps them, and opened again with open_by_handle_at.

fdinfo gives "fhandle-bytes:N fhandle-type:T f_handle:HEX"; fh_entry keeps the bytes as
little-endian 64-bit words, 16 of them at least (CRIU's fixed array, MAX_HANDLE_SZ bytes).
open_by_handle_at needs an fd on the filesystem (any mount of it): found in /proc/self/mountinfo
by the device number fdinfo shows (the kernel's encoding, major << 20 | minor).
"""

import os
import struct

_NR_OPEN_BY_HANDLE_AT = 304
O_PATH = 0o10000000
_MIN_WORDS = 16


def fh_entry(nbytes, htype, hex_bytes):
    """fh_entry from the fdinfo fields fhandle-bytes, fhandle-type and f_handle."""
    from crpy.images.pb import fh_pb2

    raw = bytes.fromhex(hex_bytes)[:nbytes]
    padded = raw.ljust(max(_MIN_WORDS * 8, -(-len(raw) // 8) * 8), b"\0")
    words = struct.unpack(f"<{len(padded) // 8}Q", padded)
    return fh_pb2.fh_entry(bytes=nbytes, type=htype, handle=words)


def handle_bytes(fh):
    return struct.pack(f"<{len(fh.handle)}Q", *fh.handle)[:fh.bytes]


def kernel_dev(sdev):
    """os.stat's st_dev for the kernel's dev_t encoding that fdinfo shows."""
    return os.makedev(sdev >> 20, sdev & 0xFFFFF)


def mounts_of(sdev):
    """Mount points of the filesystem with kernel device number sdev, in mountinfo order."""
    want, out = kernel_dev(sdev), []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            major, minor = (int(x) for x in fields[2].split(":"))
            if os.makedev(major, minor) == want:
                out.append(fields[4].replace("\\040", " "))
    return out


def mount_of(sdev):
    """A mount point of the filesystem with kernel device number sdev, or None."""
    return next(iter(mounts_of(sdev)), None)


def open_handle(fh, sdev, flags=O_PATH):
    """An fd on the object of handle fh on the filesystem sdev (OSError / RestoreError if gone)."""
    from crpy.errors import RestoreError
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import sys_call

    where = mount_of(sdev)
    if where is None:
        raise RestoreError(f"no mount of device {sdev >> 20}:{sdev & 0xFFFFF} to open a file handle on")
    raw = handle_bytes(fh)
    buf = ffi.new("unsigned char[]", 8 + len(raw))
    struct_bytes = struct.pack("<Ii", fh.bytes, fh.type) + raw
    ffi.memmove(buf, struct_bytes, len(struct_bytes))
    mount_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)   # not O_PATH: EBADF
    try:
        return sys_call(_NR_OPEN_BY_HANDLE_AT, mount_fd, buf, flags | os.O_CLOEXEC,
                        what=f"open_by_handle_at on {where}")
    finally:
        os.close(mount_fd)


def refuse_unless_ready(pid, fd, kind, objects, scan=False):
    """At dump time, for a notification group of task pid at fd: refused (UnsupportedResource)
    while it has events queued, which cannot be put back, or when one of its watched `objects`
    ((what, fdinfo handle bytes, type, hex, sdev, ino)) cannot be opened again by its handle
    (nor, with scan, found by a scan of its filesystem's mounts: crpy.resources.irmap)."""
    from crpy.errors import UnsupportedResource
    from crpy.resources import taskfd

    queued = taskfd.queued_bytes(pid, fd)
    if queued:
        raise UnsupportedResource(pid, kind, fd, f"with {queued} bytes of events queued",
                                  "crpy cannot put queued events back; dump once the task has read them")
    for what, nbytes, htype, hex_handle, sdev, ino in objects:
        try:
            os.close(open_handle(fh_entry(nbytes, htype, hex_handle), sdev))
        except Exception as e:
            if scan:
                from crpy.resources import irmap

                if irmap.find_path(sdev, ino) is not None:
                    continue
                e = f"{e}; not found either by a scan of its filesystem's mounts ({irmap.SCAN_LIMIT} entries)"
            raise UnsupportedResource(pid, kind, fd, what,
                                      f"its object cannot be opened again by file handle ({e})") from None
