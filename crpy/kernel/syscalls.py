"""Raw syscalls through the compiled cffi module, with errno turned into typed errors.

`sys_call(NR.mmap, ...)` returns the result or raises (crpy.errors.from_errno).  Numbers are the
x86_64 ones; the system headers are Linux 6.1, so newer ones are spelled out here.
"""

from crpy.errors import from_errno


class NR:
    read, write, open, close = 0, 1, 2, 3
    mmap, mprotect, munmap, brk = 9, 10, 11, 12
    rt_sigaction, rt_sigprocmask, rt_sigreturn, ioctl = 13, 14, 15, 16
    pread64, mremap, madvise = 17, 25, 28
    getpid, kill, prctl, arch_prctl = 39, 62, 157, 158
    gettid, set_tid_address = 186, 218
    set_robust_list, get_robust_list, vmsplice = 273, 274, 278
    process_vm_readv, process_vm_writev, kcmp = 310, 311, 312
    userfaultfd, membarrier, rseq = 323, 324, 334
    pidfd_send_signal, pidfd_open, clone3, pidfd_getfd = 424, 434, 435, 438
    process_mrelease = 448


_loaded = None      # (ffi, lib, ffi.CData), imported on the first syscall of the run


def _lib():
    global _loaded
    if _loaded is None:
        from crpy.kernel._sys import ffi, lib

        _loaded = ffi, lib, ffi.CData
    return _loaded


def sys_call(nr, *args, what=None, pid=None):
    """Issue syscall `nr` with up to six integer (or cffi pointer) arguments."""
    ffi, lib, cdata = _lib()
    a = [int(ffi.cast("long", x)) if isinstance(x, cdata) else int(x) for x in args]
    a += [0] * (6 - len(a))
    ret = lib.crpy_syscall6(nr, *a)
    if ret == -1:
        err = ffi.errno
        raise from_errno(err, what or f"syscall {nr}", pid)
    return ret


def ioctl(fd, request, arg, what=None):
    return sys_call(NR.ioctl, fd, request, arg, what=what or f"ioctl {request:#x} on fd {fd}")
