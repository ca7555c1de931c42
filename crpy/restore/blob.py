"""Restore step (child): load the restorer blob, fill its argument block, jump into it.

struct rst_args is declared once in parasite/restorer.h and reaches Python through cffi
(crpy/kernel/cdef/40_restore_args.*), so both sides agree on every offset.  The block lives in
the restorer region, at an address the blob reads after Python's own memory is gone.
"""

import ctypes

from crpy.errors import RestoreError
from crpy.kernel.syscalls import NR, sys_call

PROT_RWX = 7
STEP_NAMES = {1: "rseq-unregister", 2: "unmap", 3: "vdso", 4: "vmas", 5: "guards", 6: "mm-map",
              7: "comm", 8: "sigactions", 9: "rseq", 10: "tid-address", 11: "robust-list",
              12: "fs-gs", 13: "close-fds", 14: "sigreturn", 15: "pdeathsig", 16: "sigqueue",
              17: "args-abi (the restorer blob and crpy.kernel._sys are from different builds: make build)",
              18: "threads", 19: "thread-state", 20: "timers", 21: "creds", 22: "aio"}
EXIT_BASE = 100


def _ffi():
    from crpy.kernel._sys import ffi, lib

    return ffi, lib


def args_size(nr_siginfo=0):
    """Bytes of the argument block: struct rst_args, then its nr_siginfo pending signals."""
    ffi, _ = _ffi()
    return ffi.sizeof("struct rst_args") + nr_siginfo * ffi.sizeof("struct rst_siginfo")


def nr_siginfo(task):
    """How many pending signals the task's argument block carries (all its threads')."""
    return len(task.state.pending) + sum(len(th.pending) for th in getattr(task, "threads", None) or ())


def blob():
    from crpy import blobs

    return blobs.load("restorer")


def install_blob(addr):
    """Copy the relocated restorer image to addr (inside the reserved region), make it RWX."""
    b = blob()
    length = (b.size + 4095) & ~4095
    sys_call(NR.mprotect, addr, length, PROT_RWX, what="make the restorer blob executable")
    image = b.relocated(addr)
    ctypes.memmove(addr, image, len(image))
    return addr + b.sym("restorer_start")


def new_args(addr, nr_siginfo=0):
    """The argument block at addr: reserved region memory, fresh (so zero), made read-write;
    room for nr_siginfo pending signals after it (a.siginfo points there)."""
    ffi, _ = _ffi()
    size = args_size(nr_siginfo)
    sys_call(NR.mprotect, addr, (size + 4095) & ~4095, 3, what="make the restorer arguments writable")
    a = ffi.cast("struct rst_args *", addr)
    a.siginfo = addr + ffi.sizeof("struct rst_args")
    return a


def siginfo_list(a):
    """The pending-signal entries after the block, as an array of struct rst_siginfo."""
    ffi, _ = _ffi()
    return ffi.cast("struct rst_siginfo *", a.siginfo)


def fill_args(a, *, report_fd, close_from, region, cur_rseq, unmap, specials, hop, scratch,
              moves, guards, task, exe_fd, frame, gadget, gadget_kind, files_sync=(-1, -1, 0)):
    """files_sync: (done fd, wait fd, wait count) of a shared fd table (rst_args says how)."""
    ffi, lib = _ffi()
    a.report_fd, a.close_from = report_fd, close_from
    a.files_done_fd, a.files_wait_fd, a.files_wait_count = files_sync
    a.args_size = ffi.sizeof("struct rst_args")
    a.fault_step = fault_step(task.pid)
    a.region_start, a.region_len = region
    if cur_rseq:
        a.cur_rseq, a.cur_rseq_len, a.rseq_sig = cur_rseq
    _fill_list(a.unmap, unmap, lib.RST_MAX_UNMAP, "unmap ranges")
    a.nr_unmap = len(unmap)
    for i, (cur, target, length) in enumerate(specials):
        a.special[i].cur, a.special[i].target, a.special[i].len = cur, target, length
    a.nr_special, a.special_hop, a.special_scratch = len(specials), int(hop), scratch
    if len(moves) > lib.RST_MAX_VMAS:
        raise RestoreError(f"{len(moves)} VMAs; the restorer takes at most {lib.RST_MAX_VMAS}")
    for i, (start, length, premap) in enumerate(moves):
        v = a.vmas[i]
        v.start, v.len, v.premap = start, length, premap
    a.nr_vmas = len(moves)
    _fill_list(a.guards, guards, lib.RST_MAX_GUARDS, "guard regions")
    a.nr_guards = len(guards)
    _fill_mm(ffi, a, task, exe_fd)
    _fill_signals(a, task)
    a.fs_base, a.gs_base = task.regs["fs_base"], task.regs["gs_base"]
    if len(frame.data) > lib.RST_MAX_FRAME:
        raise RestoreError(f"signal frame of {len(frame.data)} bytes is too big for the restorer")
    a.frame_addr, a.frame_len = frame.addr, len(frame.data)
    ffi.memmove(a.frame, frame.data, len(frame.data))
    a.restart_rip, a.restart_handled, a.restart_intr = frame.restart
    a.gadget, a.gadget_kind = gadget, gadget_kind
    _fill_timers(ffi, lib, a, task.state.posix_timers)
    from crpy.restore import creds

    creds.fill(ffi, a, task.state.creds, task.state.dumpable)
    if getattr(task, "aio_rings", None):
        from crpy.resources import aio

        aio.fill_args(lib, a, task.aio_rings, close_from)
    threads = getattr(task, "threads", None)
    if threads:
        from crpy.restore.threads import fill_threads

        fill_threads(ffi, lib, a, threads, int.from_bytes(frame.data[:8], "little"), task.sigactions)


def _fill_timers(ffi, lib, a, timers):
    """struct rst_timer per POSIX timer (crpy.restore.task_state.PosixTimer)."""
    import struct

    if len(timers) > lib.RST_MAX_TIMERS:
        raise RestoreError(f"{len(timers)} POSIX timers; the restorer takes at most {lib.RST_MAX_TIMERS}")
    for i, t in enumerate(timers):
        r = a.timers[i]
        r.id, r.clock = t.id, t.clock
        sev = struct.pack("<QiiI", t.sival, t.signo, t.notify, t.tid).ljust(64, b"\0")
        ffi.memmove(r.sigevent, sev, 64)
        for k, v in enumerate(t.interval + t.value):
            r.its[k] = v
    a.nr_timers = len(timers)


FAULT_KILL = 0x100                 # with a step: the blob SIGKILLs itself there, without a word


def fault_step(pid):
    """Test hook: CRPY_FAULT=restorer:STEP makes the blob fail at the start of STEP (a name of
    STEP_NAMES), so tests can see every failure after the fork reported and cleaned up;
    restorer:STEP:kill makes it die there by SIGKILL instead (as a fault would kill it: no line
    on the report pipe).  @PID after either: in that task only."""
    import os

    fault = os.environ.get("CRPY_FAULT", "")
    if not fault.startswith("restorer:"):
        return 0
    spec, _, at_pid = fault.partition("@")
    if at_pid and at_pid != str(pid):
        return 0
    name, _, how = spec.split(":", 1)[1].partition(":")
    for step, step_name in STEP_NAMES.items():
        if step_name.split()[0] == name and how in ("", "kill"):
            return step | (FAULT_KILL if how else 0)
    raise RestoreError(f"CRPY_FAULT={fault}: no restorer step {name}")


def _fill_list(arr, items, limit, what):
    if len(items) > limit:
        raise RestoreError(f"{len(items)} {what}; the restorer takes at most {limit}")
    for i, (start, length) in enumerate(items):
        arr[i].start, arr[i].len = start, length


def _fill_mm(ffi, a, task, exe_fd):
    for name, value in task.mm.items():
        setattr(a.mm, name, value)
    auxv = task.auxv + [0, 0]                      # AT_NULL ends the vector
    for i, v in enumerate(auxv):
        a.auxv[i] = v
    a.mm.auxv = int(ffi.cast("uintptr_t", a.auxv))
    a.mm.auxv_size = 8 * len(auxv)
    a.mm.exe_fd = exe_fd
    comm = task.comm.encode()[:15]
    ffi.memmove(a.comm, comm + b"\0", len(comm) + 1)


def _fill_signals(a, task):
    for i, (handler, flags, restorer, mask) in enumerate(task.sigactions):
        s = a.sigactions[i]
        s.handler, s.flags, s.restorer, s.mask = handler, flags, restorer, mask
    if task.rseq:
        a.rseq_ptr, a.rseq_len, a.rseq_target_sig = task.rseq
    a.tid_address = task.tid_address
    a.robust_list, a.robust_list_len = task.robust_list
    st = task.state
    a.pdeath_sig, a.stop = st.pdeath_sig, st.stop_signo if st.stopped else 0
    ffi, _ = _ffi()
    entries = siginfo_list(a)              # new_args made room for every one
    for i, (shared, info) in enumerate(st.pending):
        entries[i].shared = int(shared)
        ffi.memmove(entries[i].info, info[:128].ljust(128, b"\0"), 128)
    a.nr_siginfo = len(st.pending)


def jump(entry, args):
    """Call the blob with its argument block; it never returns (the task becomes the restored
    one, or exits)."""
    ffi, _ = _ffi()
    fn = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)(entry)
    fn(int(ffi.cast("uintptr_t", args)))
    raise RestoreError("the restorer blob returned")


def describe_exit(code, line=None):
    """A one-line reason for a blob failure: from its report line, else from its exit code."""
    import errno
    import os

    if line and line.startswith("rst "):
        try:
            step, addr, err = (int(x) for x in line.split()[1:4])
        except ValueError:
            return f"restorer: {line}"
        name = errno.errorcode.get(err, str(err))
        return (f"restorer step {STEP_NAMES.get(step, step)} failed at {addr:#x}: "
                f"{name} ({os.strerror(err)})")
    if code is not None and EXIT_BASE < code <= EXIT_BASE + len(STEP_NAMES):
        return f"restorer step {STEP_NAMES[code - EXIT_BASE]} failed (exit {code})"
    return None
