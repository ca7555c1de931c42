"""signalfd: dump and restore of the signal mask and the flags (O_NONBLOCK).

As CRIU does, one files.img entry of type SIGNALFD (signalfd_entry) per open file, with the mask
from /proc/PID/fdinfo ("sigmask", hex; bit n-1 for signal n).  A signalfd holds no signals of
its own: it reads the task's pending signals, which the task's restore brings back, so the
signals pending for it stay pending.
"""

import fcntl
import os

O_CLOEXEC = 0o2000000
_NR_SIGNALFD4 = 289


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, signalfd_pb2
    from crpy.resources.regfile import fown

    e = signalfd_pb2.signalfd_entry(id=file_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown(),
                                    sigmask=int(fdfacts.info.raw["sigmask"], 16))
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.SIGNALFD, id=file_id, sgfd=e)


def check(fdfacts):
    from crpy.errors import UnsupportedResource

    if "sigmask" not in fdfacts.info.raw:
        raise UnsupportedResource(fdfacts.pid, "signalfd", fdfacts.fd, fdfacts.target,
                                  "this kernel's fdinfo does not show the signalfd's mask")


def restore_fd(entry, ctx):
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import sys_call

    e = entry.sgfd
    mask = ffi.new("unsigned long long *", e.sigmask)
    fd = sys_call(_NR_SIGNALFD4, -1, mask, 8, O_CLOEXEC, what="signalfd4")
    fcntl.fcntl(fd, fcntl.F_SETFL, e.flags & os.O_NONBLOCK)
    return fd
