"""PAGEMAP_SCAN (Linux 6.7+) on /proc/PID/pagemap: which pages of a range hold something.

One ioctl returns compact runs (start, end, categories) instead of one u64 per page.  The system
headers are 6.1, so the ABI constants are spelled out here.  The kernel stops when the result
vector is full and reports how far it got (walk_end, stale after more than 512 regions: see
scan()); scan() resumes from there, so any range size works with a fixed buffer.
"""

import os

from crpy.errors import NoSuchProcess

PAGEMAP_SCAN = 0xC0606610            # _IOWR('f', 16, struct pm_scan_arg) (96 bytes)

PAGE_IS_WPALLOWED = 1 << 0
PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_FILE = 1 << 2                # page cache page (file or shmem), not anon
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5             # the shared zero page
PAGE_IS_HUGE = 1 << 6
PAGE_IS_SOFT_DIRTY = 1 << 7
PAGE_IS_GUARD = 1 << 8               # MADV_GUARD_INSTALL marker (6.14+)

PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1

PAGE_SIZE = 4096
_VEC_LEN = 4096                      # regions per ioctl (96 KiB buffer)


def _append_run(out, start, end, categories):
    if out and out[-1][1] == start and out[-1][2] == categories:
        out[-1] = (out[-1][0], end, categories)        # one run split across two ioctls
    else:
        out.append((start, end, categories))


class Pagemap:
    """An open /proc/PID/pagemap; use as a context manager."""

    def __init__(self, pid):
        self.pid = pid
        try:
            self.fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NoSuchProcess(pid) from None
        except OSError as e:
            from crpy.errors import from_errno

            raise from_errno(e.errno, f"open /proc/{pid}/pagemap", pid) from None

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def scan(self, start, end, mask=0, inverted=0, anyof=0, return_mask=None, flags=0):
        """Runs [(start, end, categories)] of pages in [start, end) whose categories, after
        XOR with `inverted`, have every bit of `mask` and (when given) one bit of `anyof`.
        flags: PM_SCAN_WP_MATCHING write-protects the pages found, in the same walk."""
        from crpy.kernel._sys import ffi
        from crpy.kernel.syscalls import ioctl

        if return_mask is None:
            return_mask = mask | anyof
        vec = ffi.new("struct page_region[]", _VEC_LEN)
        arg = ffi.new("struct pm_scan_arg *")
        arg.size, arg.flags = ffi.sizeof("struct pm_scan_arg"), flags
        arg.vec, arg.vec_len = int(ffi.cast("uintptr_t", vec)), _VEC_LEN
        arg.category_inverted, arg.category_mask = inverted, mask
        arg.category_anyof_mask, arg.return_mask = anyof, return_mask
        out = []
        pos = start
        while pos < end:
            arg.start, arg.end, arg.walk_end = pos, end, 0
            n = ioctl(self.fd, PAGEMAP_SCAN, arg, what=f"PAGEMAP_SCAN of pid {self.pid}")
            for i in range(n):
                _append_run(out, vec[i].start, vec[i].end, vec[i].categories)
            if n < _VEC_LEN:
                break                      # room left: the walk reached `end`
            # Full: go on after what was found.  walk_end alone cannot say where: the kernel
            # leaves it at its last internal buffer flush (every 512 regions) even when the
            # walk went on past it, and rescanning from there would lose the pages that
            # PM_SCAN_WP_MATCHING protected again after it (measured on 6.18).
            nxt = max(arg.walk_end, vec[n - 1].end)
            if nxt <= pos:
                break
            pos = nxt
        return out

    def data_runs(self, start, end):
        """Private memory worth saving: present or swapped, not the zero page, not page cache
        (so in a private file mapping only the COW'd pages), not a guard marker (those count as
        swapped)."""
        unwanted = PAGE_IS_PFNZERO | PAGE_IS_FILE | PAGE_IS_GUARD
        return self.scan(start, end, mask=unwanted, inverted=unwanted,
                         anyof=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                         return_mask=PAGE_IS_PRESENT | PAGE_IS_SWAPPED)

    def guard_runs(self, start, end):
        """MADV_GUARD_INSTALL regions (invisible in /proc/PID/maps)."""
        return self.scan(start, end, anyof=PAGE_IS_GUARD)
