"""userfaultfd ioctls, no policy: write-protect dirty tracking (Linux 6.7+ WP_ASYNC) and missing
mode for lazy restore (crpy.lazy).

The system headers are 6.1: the structs are packed here as u64 arrays and the request numbers
and feature bits spelled out (include/uapi/linux/userfaultfd.h).  In async mode a write to a
write-protected page is resolved by the kernel itself (no event, no handler), and the page then
shows PAGE_IS_WRITTEN in PAGEMAP_SCAN (crpy.kernel.pagemap) until it is protected again.
"""

UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F             # _IOWR(0xAA, 0x3F, struct uffdio_api)      (24 bytes)
UFFDIO_REGISTER = 0xC020AA00        # _IOWR(0xAA, 0x00, struct uffdio_register) (32 bytes)
UFFDIO_UNREGISTER = 0x8010AA01      # _IOR(0xAA, 0x01, struct uffdio_range)     (16 bytes)
UFFDIO_WRITEPROTECT = 0xC018AA06    # _IOWR(0xAA, 0x06, struct uffdio_writeprotect)

UFFD_FEATURE_WP_UNPOPULATED = 1 << 13   # none PTEs count as protected: PAGEMAP_SCAN may re-arm
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0

O_CLOEXEC, O_NONBLOCK = 0o2000000, 0o4000
UFFD_USER_MODE_ONLY = 1               # userfaultfd() flag: what a task without CAP_SYS_PTRACE may ask


def _ioctl(fd, request, words, what):
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import ioctl

    buf = ffi.new("uint64_t[]", list(words))
    ioctl(fd, request, buf, what=what)
    return buf


def enable_async_wp(fd):
    """UFFDIO_API with WP_ASYNC|WP_UNPOPULATED (once per uffd)."""
    features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
    _ioctl(fd, UFFDIO_API, (UFFD_API, features, 0), "UFFDIO_API (WP_ASYNC|WP_UNPOPULATED)")


def register_wp(fd, start, end):
    """Register [start, end) (whole VMAs) in write-protect mode."""
    _ioctl(fd, UFFDIO_REGISTER, (start, end - start, UFFDIO_REGISTER_MODE_WP, 0),
           f"UFFDIO_REGISTER {start:#x}-{end:#x}")


def write_protect(fd, start, end):
    """Arm tracking on [start, end): every page, present or not, counts as not written."""
    _ioctl(fd, UFFDIO_WRITEPROTECT, (start, end - start, UFFDIO_WRITEPROTECT_MODE_WP),
           f"UFFDIO_WRITEPROTECT {start:#x}-{end:#x}")


# ---------------------------------------------------------------- missing mode (lazy restore)
# The same uapi header: MISSING registration, UFFDIO_COPY/ZEROPAGE/WAKE and the events a
# restored task's own mm changes send (fork, mremap, madvise(DONTNEED), munmap).

NR_USERFAULTFD = 323
UFFDIO_WAKE = 0x8010AA02            # _IOR(0xAA, 0x02, struct uffdio_range)      (16 bytes)
UFFDIO_COPY = 0xC028AA03            # _IOWR(0xAA, 0x03, struct uffdio_copy)      (40 bytes)
UFFDIO_ZEROPAGE = 0xC020AA04        # _IOWR(0xAA, 0x04, struct uffdio_zeropage)  (32 bytes)
UFFDIO_REGISTER_MODE_MISSING = 1 << 0

UFFD_FEATURE_EVENT_FORK = 1 << 1
UFFD_FEATURE_EVENT_REMAP = 1 << 2
UFFD_FEATURE_EVENT_REMOVE = 1 << 3
UFFD_FEATURE_EVENT_UNMAP = 1 << 6
LAZY_FEATURES = (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
                 UFFD_FEATURE_EVENT_UNMAP)

UFFD_EVENT_PAGEFAULT, UFFD_EVENT_FORK, UFFD_EVENT_REMAP = 0x12, 0x13, 0x14
UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP = 0x15, 0x16
MSG_SIZE = 32                       # struct uffd_msg


def _raw_ioctl(fd, request, buf):
    """ioctl without raising: 0, or -errno (the caller decides what each errno means)."""
    from crpy.kernel._sys import ffi, lib
    from crpy.kernel.syscalls import NR

    ret = lib.crpy_syscall6(NR.ioctl, fd, request, int(ffi.cast("uintptr_t", buf)), 0, 0, 0)
    return -ffi.errno if ret == -1 else 0


def open_missing_uffd():
    """A userfaultfd of the calling process's mm, API done with LAZY_FEATURES (non-blocking)."""
    from crpy.kernel.syscalls import sys_call

    fd = sys_call(NR_USERFAULTFD, O_CLOEXEC | O_NONBLOCK, what="userfaultfd()")
    try:
        _ioctl(fd, UFFDIO_API, (UFFD_API, LAZY_FEATURES, 0), "UFFDIO_API (event fork|remap|remove|unmap)")
    except BaseException:
        import os

        os.close(fd)
        raise
    return fd


def register_missing(fd, start, end):
    """Register [start, end) (whole VMAs) in missing mode: a first touch waits for the reader."""
    _ioctl(fd, UFFDIO_REGISTER, (start, end - start, UFFDIO_REGISTER_MODE_MISSING, 0),
           f"UFFDIO_REGISTER(MISSING) {start:#x}-{end:#x}")


def copy(fd, dst, src, length):
    """UFFDIO_COPY (waking the faulting threads): (bytes copied, -errno or 0).  Copying stops at
    the first page already present (-EEXIST when it is the first) and gives -EAGAIN while the mm
    is changing (an event not read yet)."""
    from crpy.kernel._sys import ffi

    buf = ffi.new("int64_t[]", [dst, src, length, 0, 0])
    err = _raw_ioctl(fd, UFFDIO_COPY, buf)
    done = buf[4]
    if done == length:
        return done, 0
    if done > 0:
        return done, err or -11        # stopped early: the kernel says EAGAIN
    return 0, done or err


def zeropage(fd, start, length):
    """UFFDIO_ZEROPAGE (waking the faulting threads): 0 or -errno."""
    from crpy.kernel._sys import ffi

    return _raw_ioctl(fd, UFFDIO_ZEROPAGE, ffi.new("int64_t[]", [start, length, 0, 0]))


def wake(fd, start, length):
    """UFFDIO_WAKE: threads waiting on [start, start+length) retry (the page is there now)."""
    from crpy.kernel._sys import ffi

    return _raw_ioctl(fd, UFFDIO_WAKE, ffi.new("uint64_t[]", [start, length]))


def parse_messages(data):
    """[(event, a, b, c)] from a read of whole uffd_msg records: PAGEFAULT (flags, address, tid),
    FORK (new uffd, 0, 0), REMAP (from, to, len), REMOVE and UNMAP (start, end, 0)."""
    import struct

    out = []
    for off in range(0, len(data) - MSG_SIZE + 1, MSG_SIZE):
        event = data[off]
        a, b, c = struct.unpack_from("<QQQ", data, off + 8)
        if event == UFFD_EVENT_FORK:
            a, b, c = a & 0xffffffff, 0, 0
        out.append((event, a, b, c))
    return out
