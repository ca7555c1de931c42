"""`crpy check`: does this kernel and this installation have what crpy needs?

Each check is a small function returning None (fine) or a sentence saying what is missing and what
it breaks.  Prints criu's "Looks good." when every check passes; exit code 1 otherwise.
"""

import os
import sys


def _check_build():
    try:
        import crpy.kernel._sys  # noqa: F401
        import crpy.blobs._parasite  # noqa: F401
        import crpy.blobs._restorer  # noqa: F401
        from crpy.images.pb import core_pb2  # noqa: F401
    except ImportError as e:
        return f"crpy is not built ({e}); run `make build` or `pip install .`"


def _check_ptrace_seize():
    from crpy.kernel.syscalls import NR, sys_call

    pid = os.fork()
    if pid == 0:
        os.pause()
        os._exit(0)
    try:
        from crpy.kernel._sys import ffi, lib

        if lib.crpy_ptrace(0x4206, pid, 0, 0) != 0:  # PTRACE_SEIZE
            return f"PTRACE_SEIZE failed: {os.strerror(ffi.errno)}"
    finally:
        sys_call(NR.kill, pid, 9)
        os.waitpid(pid, 0)


def _check_clone3():
    from crpy.kernel.syscalls import NR

    from crpy.kernel._sys import ffi, lib

    # clone3 with a NULL argument block fails with EFAULT or EINVAL when it exists, ENOSYS when not.
    lib.crpy_syscall6(NR.clone3, 0, 0, 0, 0, 0, 0)
    if ffi.errno == 38:
        return "clone3 is missing: PIDs cannot be restored"


def _check_pagemap_scan():
    from crpy.kernel.syscalls import NR
    from crpy.kernel._sys import ffi, lib

    arg = ffi.new("struct pm_scan_arg *")
    arg.size = ffi.sizeof("struct pm_scan_arg")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        if lib.crpy_syscall6(NR.ioctl, fd, 0xC0606610, int(ffi.cast("long", arg)), 0, 0, 0) < 0:
            if ffi.errno == 25:  # ENOTTY: the ioctl does not exist
                return "PAGEMAP_SCAN is missing (Linux 6.7+): pages cannot be selected"
    finally:
        os.close(fd)


def _check_pipe_size():
    size = int(open("/proc/sys/fs/pipe-max-size").read())
    if size < 16 << 20:
        return (f"fs.pipe-max-size is {size}: page dumps use a 1 MiB pipe and run slower "
                "(sysctl -w fs.pipe-max-size=67108864)")


_CHECKS = [_check_build, _check_ptrace_seize, _check_clone3, _check_pagemap_scan, _check_pipe_size]
_WARN_ONLY = {_check_pipe_size}


def run_check():
    failed = False
    for check in _CHECKS:
        problem = check()
        if problem:
            level = "Warn" if check in _WARN_ONLY else "Error"
            failed |= check not in _WARN_ONLY
            print(f"{level} ({check.__name__[7:]}): {problem}", file=sys.stderr)
    if not failed:
        print("Looks good.")
    return 1 if failed else 0
