"""eventfd: dump and restore of the counter and the flags (EFD_SEMAPHORE, O_NONBLOCK).

As CRIU does, one files.img entry of type EVENTFD (eventfd_file_entry) per open file: the status
flags and the counter, read from /proc/PID/fdinfo ("eventfd-count", hex) while the task is
frozen.  EFD_SEMAPHORE is shown there too ("eventfd-semaphore", Linux 6.6 and later); CRIU 4.x
has no field for it, so it goes into crpy's field 1000.  Close-on-exec is the fdinfo entry's.

Restore makes the eventfd at 0 and writes the counter into it: eventfd2 takes only a 32-bit
initial value, a write adds any count up to 2^64-2.
"""

import fcntl
import os

from crpy.errors import UnsupportedResource

O_CLOEXEC = 0o2000000
_SETFL = os.O_NONBLOCK


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import eventfd_pb2, fdinfo_pb2
    from crpy.resources.regfile import fown

    raw = fdfacts.info.raw
    if "eventfd-count" not in raw:
        raise UnsupportedResource(fdfacts.pid, "eventfd", fdfacts.fd, hint="/proc fdinfo shows no eventfd-count")
    entry = eventfd_pb2.eventfd_file_entry(id=file_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown(),
                                           counter=int(raw["eventfd-count"], 16))
    if raw.get("eventfd-semaphore", "0") != "0":
        entry.semaphore = True
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.EVENTFD, id=file_id, efd=entry)


def check(fdfacts):
    """Refused before the task is touched: a kernel that does not show the semaphore flag would
    let an EFD_SEMAPHORE eventfd come back as a plain one."""
    if "eventfd-semaphore" not in fdfacts.info.raw:
        raise UnsupportedResource(fdfacts.pid, "eventfd", fdfacts.fd, fdfacts.target,
                                  "this kernel's fdinfo does not tell EFD_SEMAPHORE (Linux 6.6 or later does)")


def restore_fd(entry, ctx):
    e = entry.efd
    fd = os.eventfd(0, os.EFD_CLOEXEC | (os.EFD_SEMAPHORE if e.semaphore else 0))
    if e.counter:
        os.eventfd_write(fd, e.counter)
    fcntl.fcntl(fd, fcntl.F_SETFL, e.flags & _SETFL)
    return fd
