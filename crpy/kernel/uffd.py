"""userfaultfd ioctls for write-protect dirty tracking (Linux 6.7+ WP_ASYNC), no policy.

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
