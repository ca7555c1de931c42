"""ptrace, the way crpy uses it: SEIZE-based, x86_64, typed errors.

Thin wrappers over the raw ptrace syscall of crpy.kernel._sys: seize/interrupt/wait for the
event-stop, registers (struct user_regs_struct as `Regs`), the XSAVE area (NT_X86_XSTATE, sized
by the kernel's answer), the signal mask, pending siginfos, the syscall info of a syscall-stop and
the rseq registration.  Every failure goes through `_ptrace`, the one place that maps errno to
crpy.errors (ESRCH -> NoSuchProcess naming the pid, EPERM -> AccessDenied, ...).
"""

import errno
import os
import struct

from crpy.errors import AccessDenied, KernelError, NoSuchProcess, SeizeError, from_errno

# Requests.
CONT, KILL, GETREGS, SETREGS, DETACH, SYSCALL = 7, 8, 12, 13, 17, 24
SETOPTIONS, GETEVENTMSG, GETSIGINFO = 0x4200, 0x4201, 0x4202
GETREGSET, SETREGSET, SEIZE, INTERRUPT, LISTEN = 0x4204, 0x4205, 0x4206, 0x4207, 0x4208
PEEKSIGINFO, GETSIGMASK, SETSIGMASK = 0x4209, 0x420A, 0x420B
GET_SYSCALL_INFO, GET_RSEQ_CONFIGURATION = 0x420E, 0x420F

# Options and events.
O_TRACESYSGOOD, O_EXITKILL, O_SUSPEND_SECCOMP = 1, 1 << 20, 1 << 21
EVENT_STOP = 128
NT_X86_XSTATE = 0x202
PEEKSIGINFO_SHARED = 1
WALL = 0x40000000  # __WALL: wait for clone children too
SYSCALL_INFO_NONE, SYSCALL_INFO_ENTRY, SYSCALL_INFO_EXIT, SYSCALL_INFO_SECCOMP = 0, 1, 2, 3

REG_NAMES = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
             "fs_base gs_base ds es fs gs").split()
_REGS = struct.Struct("<27Q")
_XSTATE_MAX = 64 * 1024  # generous first guess; the real size is cached after the first call
_xstate_size = None


class Regs:
    """struct user_regs_struct (x86_64): 27 unsigned 64-bit fields, named as in <sys/user.h>."""

    __slots__ = REG_NAMES

    def __init__(self, *values):
        for name, v in zip(REG_NAMES, values or (0,) * 27):
            setattr(self, name, v)

    @classmethod
    def from_bytes(cls, raw):
        return cls(*_REGS.unpack(raw))

    def to_bytes(self):
        return _REGS.pack(*(getattr(self, n) & 0xFFFFFFFFFFFFFFFF for n in REG_NAMES))

    def copy(self):
        return Regs(*(getattr(self, n) for n in REG_NAMES))

    def signed(self, name):
        v = getattr(self, name)
        return v - (1 << 64) if v >= 1 << 63 else v

    def as_dict(self):
        return {n: getattr(self, n) for n in REG_NAMES}

    def __eq__(self, other):
        return isinstance(other, Regs) and self.to_bytes() == other.to_bytes()

    def __repr__(self):
        return "Regs(" + ", ".join(f"{n}={getattr(self, n):#x}" for n in REG_NAMES) + ")"


_loaded = None      # (ffi, lib) of the compiled module, imported on the first request of the run


def _ffi():
    global _loaded
    if _loaded is None:
        from crpy.kernel._sys import ffi, lib

        _loaded = ffi, lib
    return _loaded


def _addr(ffi, buf):
    return ffi.cast("uintptr_t", buf)


def _error(err, what, pid):
    """errno of a ptrace request -> typed error (the one mapping place of this module)."""
    if err == errno.ESRCH:
        if os.path.exists(f"/proc/{pid}"):
            return KernelError(f"{what} of {pid}", err, "the task is not in a ptrace stop of ours")
        return NoSuchProcess(pid, what)
    if err in (errno.EPERM, errno.EACCES):
        return AccessDenied(f"{what} of {pid}", err, _eperm_hint(pid))
    return from_errno(err, f"{what} of {pid}", pid)


def _eperm_hint(pid):
    tracer = _tracer_pid(pid)
    if tracer:
        return f"pid {pid} is already traced by pid {tracer}"
    if pid == os.getpid():
        return "crpy cannot trace itself"
    return "crpy needs root (CAP_SYS_PTRACE)"


def _tracer_pid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ptrace(request, pid, addr, data, what):
    ffi, lib = _ffi()
    ret = lib.crpy_ptrace(request, pid, addr, data)
    if ret == -1:
        err = ffi.errno
        if err:
            raise _error(err, what, pid)
    return ret


# ---- attach, stops, resume ----

def seize(pid, options=O_TRACESYSGOOD):
    """SEIZE + INTERRUPT + wait for the event-stop; returns the stop signal (SIGTRAP when the
    interrupt stopped it, the stop signal when the task was in a group-stop)."""
    try:
        _ptrace(SEIZE, pid, 0, options, "PTRACE_SEIZE")
    except KernelError as e:
        raise SeizeError(f"cannot seize pid {pid}: {e}", getattr(e, "hint", None)) from e
    interrupt(pid)
    return wait_event_stop(pid)


def seize_nowait(pid, options=O_TRACESYSGOOD):
    """SEIZE + INTERRUPT without waiting: many threads are then stopped in parallel, and each
    one's event-stop collected with wait_event_stop(pid)."""
    try:
        _ptrace(SEIZE, pid, 0, options, "PTRACE_SEIZE")
    except KernelError as e:
        raise SeizeError(f"cannot seize pid {pid}: {e}", getattr(e, "hint", None)) from e
    interrupt(pid)


def interrupt(pid):
    _ptrace(INTERRUPT, pid, 0, 0, "PTRACE_INTERRUPT")


def wait(pid, nohang=False):
    """waitpid(pid, __WALL) -> raw status (0 with nohang when nothing happened).  A task that
    exited or was killed raises NoSuchProcess."""
    try:
        got, status = os.waitpid(pid, WALL | (os.WNOHANG if nohang else 0))
    except ChildProcessError:
        raise NoSuchProcess(pid, "waitpid") from None
    if got == 0:
        return 0
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        raise NoSuchProcess(pid, f"task died ({describe_status(status)}), pid")
    return status


def describe_status(status):
    if os.WIFEXITED(status):
        return f"exited with {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    if os.WIFSTOPPED(status):
        event = status >> 16
        return f"stopped by signal {os.WSTOPSIG(status)}" + (f" event {event}" if event else "")
    return f"status {status:#x}"


def is_event_stop(status):
    return os.WIFSTOPPED(status) and (status >> 16) == EVENT_STOP


def is_syscall_stop(status):
    return os.WIFSTOPPED(status) and os.WSTOPSIG(status) == (0x80 | 5)


def wait_event_stop(pid):
    """Wait for the PTRACE_EVENT_STOP an INTERRUPT asked for.  A signal-delivery-stop met on
    the way is passed on to the task (it would have got it anyway); returns the stop signal."""
    for _ in range(64):
        status = wait(pid)
        if not os.WIFSTOPPED(status):
            continue
        if is_event_stop(status):
            return os.WSTOPSIG(status)
        if is_syscall_stop(status):
            raise SeizeError(f"pid {pid}: unexpected syscall-stop while waiting for the event-stop")
        cont(pid, os.WSTOPSIG(status))  # signal-delivery-stop: deliver it, the interrupt stays pending
    raise SeizeError(f"pid {pid}: never reached the interrupt stop")


def cont(pid, sig=0):
    _ptrace(CONT, pid, 0, sig, "PTRACE_CONT")


def syscall(pid, sig=0):
    _ptrace(SYSCALL, pid, 0, sig, "PTRACE_SYSCALL")


def listen(pid):
    _ptrace(LISTEN, pid, 0, 0, "PTRACE_LISTEN")


def detach(pid, sig=0):
    _ptrace(DETACH, pid, 0, sig, "PTRACE_DETACH")


def set_options(pid, options):
    _ptrace(SETOPTIONS, pid, 0, options, "PTRACE_SETOPTIONS")


def get_event_msg(pid):
    ffi, _ = _ffi()
    buf = ffi.new("unsigned long *")
    _ptrace(GETEVENTMSG, pid, 0, _addr(ffi, buf), "PTRACE_GETEVENTMSG")
    return buf[0]


# ---- registers and state ----

def get_regs(pid):
    ffi, _ = _ffi()
    buf = ffi.new("unsigned char[]", _REGS.size)
    _ptrace(GETREGS, pid, 0, _addr(ffi, buf), "PTRACE_GETREGS")
    return Regs.from_bytes(bytes(ffi.buffer(buf)))


def set_regs(pid, regs):
    ffi, _ = _ffi()
    buf = ffi.from_buffer(regs.to_bytes())
    _ptrace(SETREGS, pid, 0, _addr(ffi, buf), "PTRACE_SETREGS")


def get_xstate(pid):
    """The task's XSAVE area as PTRACE_GETREGSET(NT_X86_XSTATE) gives it (size: the kernel's)."""
    global _xstate_size
    ffi, _ = _ffi()
    size = _xstate_size or _XSTATE_MAX
    buf = ffi.new("unsigned char[]", size)
    iov = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": size})
    _ptrace(GETREGSET, pid, NT_X86_XSTATE, _addr(ffi, iov), "PTRACE_GETREGSET(NT_X86_XSTATE)")
    _xstate_size = iov.iov_len
    return bytes(ffi.buffer(buf, iov.iov_len))


def set_xstate(pid, xstate):
    ffi, _ = _ffi()
    buf = ffi.from_buffer(xstate)
    iov = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": len(xstate)})
    _ptrace(SETREGSET, pid, NT_X86_XSTATE, _addr(ffi, iov), "PTRACE_SETREGSET(NT_X86_XSTATE)")


def get_sigmask(pid):
    ffi, _ = _ffi()
    buf = ffi.new("unsigned long long *")
    _ptrace(GETSIGMASK, pid, 8, _addr(ffi, buf), "PTRACE_GETSIGMASK")
    return buf[0]


def set_sigmask(pid, mask):
    ffi, _ = _ffi()
    buf = ffi.new("unsigned long long *", mask & 0xFFFFFFFFFFFFFFFF)
    _ptrace(SETSIGMASK, pid, 8, _addr(ffi, buf), "PTRACE_SETSIGMASK")


def get_siginfo(pid):
    """siginfo of the current signal-delivery-stop, 128 raw bytes."""
    ffi, _ = _ffi()
    buf = ffi.new("unsigned char[128]")
    _ptrace(GETSIGINFO, pid, 0, _addr(ffi, buf), "PTRACE_GETSIGINFO")
    return bytes(ffi.buffer(buf))


def peek_siginfo(pid, shared=False, batch=32):
    """Every pending siginfo (128 raw bytes each) of the task's private or shared queue."""
    ffi, _ = _ffi()
    out = []
    args = ffi.new("unsigned char[16]")
    buf = ffi.new("unsigned char[]", 128 * batch)
    while True:
        struct.pack_into("<QIi", ffi.buffer(args), 0, len(out), PEEKSIGINFO_SHARED if shared else 0, batch)
        n = _ptrace(PEEKSIGINFO, pid, _addr(ffi, args), _addr(ffi, buf), "PTRACE_PEEKSIGINFO")
        raw = bytes(ffi.buffer(buf, 128 * n))
        out += [raw[i * 128:(i + 1) * 128] for i in range(n)]
        if n < batch:
            return out


class SyscallInfo:
    """PTRACE_GET_SYSCALL_INFO: op (0 none, 1 entry, 2 exit, 3 seccomp), ip, sp, and nr + args
    (entry, seccomp) or rval + is_error (exit)."""

    __slots__ = ("op", "arch", "ip", "sp", "nr", "args", "rval", "is_error")

    def __repr__(self):
        return f"SyscallInfo(op={self.op}, nr={self.nr}, rval={self.rval}, ip={self.ip:#x})"


def get_syscall_info(pid):
    ffi, _ = _ffi()
    buf = ffi.new("unsigned char[128]")
    _ptrace(GET_SYSCALL_INFO, pid, 128, _addr(ffi, buf), "PTRACE_GET_SYSCALL_INFO")
    raw = bytes(ffi.buffer(buf))
    info = SyscallInfo()
    info.op, info.arch, info.ip, info.sp = struct.unpack_from("<B3xIQQ", raw)
    info.nr, info.args, info.rval, info.is_error = None, (), None, None
    if info.op in (SYSCALL_INFO_ENTRY, SYSCALL_INFO_SECCOMP):
        vals = struct.unpack_from("<7Q", raw, 24)
        info.nr, info.args = vals[0], vals[1:]
    elif info.op == SYSCALL_INFO_EXIT:
        info.rval, info.is_error = struct.unpack_from("<qB", raw, 24)
    return info


def get_rseq_config(pid):
    """The task's rseq registration: dict(pointer, size, signature, flags); pointer 0 = none."""
    ffi, _ = _ffi()
    buf = ffi.new("unsigned char[32]")
    _ptrace(GET_RSEQ_CONFIGURATION, pid, 32, _addr(ffi, buf), "PTRACE_GET_RSEQ_CONFIGURATION")
    ptr, size, sig, flags = struct.unpack_from("<QIII", bytes(ffi.buffer(buf)))
    return {"pointer": ptr, "size": size, "signature": sig, "flags": flags}
