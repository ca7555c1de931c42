"""The x86_64 rt_sigframe a restored task returns through (pure Python, no kernel calls).

The restorer ends in rt_sigreturn, so the saved registers, signal mask, altstack and the whole
XSAVE area travel in a frame laid out exactly as the kernel lays out a signal frame:

    F+0    pretcode (u64): the task's sa_restorer (popped by the self-unmap gadget's `ret`)
    F+8    ucontext: uc_flags, uc_link, uc_stack, uc_mcontext (struct sigcontext), uc_sigmask
    F+312  siginfo (128 bytes, zero)
    fp     fpstate: the XSAVE image, 64-byte aligned, its software bytes (offset 464) patched
           so the kernel takes the extended state, and FP_XSTATE_MAGIC2 right after it

Placement follows the kernel's get_sigframe() from the saved rsp (red zone, fpstate, frame).
A task stopped inside a syscall is rewound so that it re-enters the syscall, unless a signal
handler runs as it comes back, which ends the syscall as the kernel would (see restart_fixup).
"""

import struct

from crpy.record import dataclass

FRAME_HEAD = 440            # pretcode + ucontext + siginfo
UCONTEXT_OFF = 8
MCONTEXT_OFF = UCONTEXT_OFF + 40
SIGMASK_OFF = UCONTEXT_OFF + 296
SW_BYTES_OFF = 464          # struct _fpx_sw_bytes inside the legacy FXSAVE area
XCOMP_BV_OFF = 520
XSTATE_BV_OFF = 512
XSAVE_HEADER_END = 576
FP_XSTATE_MAGIC1 = 0x46505853
FP_XSTATE_MAGIC2 = 0x46505845
UC_FLAGS = 0x1 | 0x2 | 0x4  # UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
REDZONE = 128

ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
EINTR = 4
SA_RESTART = 0x10000000
SIG_DFL, SIG_IGN = 0, 1
_DEFAULT_IGNORED = (17, 18, 23, 28)          # SIGCHLD, SIGCONT, SIGURG, SIGWINCH
_DEFAULT_STOP = (19, 20, 21, 22)

# struct sigcontext (64-bit): 18 u64, then cs gs fs ss (u16), then err trapno oldmask cr2
# fpstate and 8 reserved u64.
_GPR_ORDER = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
              "rdx", "rax", "rcx", "rsp", "rip", "eflags")
_SIGCONTEXT = struct.Struct("<18Q4H5Q8Q")
assert _SIGCONTEXT.size == 256

REG_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs")


@dataclass(frozen=True)
class Frame:
    addr: int      # F: where the frame starts; rt_sigreturn runs with rsp = addr + 8
    data: bytes    # the bytes to copy to addr
    fpstate: int   # the absolute address of the XSAVE image inside it
    restart: tuple = (0, 0, 0)   # (rip after the syscall, handled, intr): see restart_masks


def _s64(v):
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def restart_fixup(regs, handler_flags=None):
    """Registers of a task stopped inside a syscall, rewound to re-enter it.

    rt_sigreturn sets orig_ax = -1, so the kernel's own restart logic never runs for the
    restored task: do it here.  -ERESTARTSYS/-NOINTR/-NOHAND re-issue the syscall (rax =
    orig_rax, rip back over the 2-byte `syscall`).  -ERESTART_RESTARTBLOCK (nanosleep and
    friends) needs a restart block the new task does not have; it is re-issued the same way,
    so a relative sleep starts over with its full timeout and an absolute one ends on time.
    handler_flags (the sa_flags of a handler that runs as the task comes back, None if none):
    as the kernel does then, the syscall returns -EINTR instead for -ERESTARTNOHAND,
    -ERESTART_RESTARTBLOCK, and -ERESTARTSYS without SA_RESTART (re-issued, the call would
    sleep on after the handler, as in a pause() loop that never sees its signal).
    Returns a new dict; regs is left alone."""
    out = dict(regs)
    orig, rax = _s64(regs["orig_rax"]), _s64(regs["rax"])
    if orig < 0 or -rax not in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK):
        return out
    if handler_flags is not None and (-rax in (ERESTARTNOHAND, ERESTART_RESTARTBLOCK) or
                                      -rax == ERESTARTSYS and not handler_flags & SA_RESTART):
        out["rax"] = -EINTR & (1 << 64) - 1
        return out
    out["rax"] = orig
    out["rip"] = regs["rip"] - 2
    return out


def restart_masks(regs, fixed, sigmask, sigactions):
    """For a frame that re-enters a syscall (fixed: restart_fixup's registers): (the rip just
    after the `syscall`, the signals caught and not blocked, those of them whose handler would
    end the syscall with -EINTR).  The restorer looks at what is pending at the very end (a
    SIGCONT that ended the restored stop) and ends the syscall then.  (0, 0, 0) otherwise."""
    if fixed["rip"] == regs["rip"] or not sigactions:
        return 0, 0, 0
    err = -_s64(regs["rax"])
    handled = intr = 0
    for sig, (handler, flags) in enumerate(((a[0], a[1]) for a in sigactions), 1):
        if handler in (SIG_DFL, SIG_IGN) or sigmask >> (sig - 1) & 1 or sig in (9, 19):
            continue
        handled |= 1 << (sig - 1)
        if err in (ERESTARTNOHAND, ERESTART_RESTARTBLOCK) or err == ERESTARTSYS and not flags & SA_RESTART:
            intr |= 1 << (sig - 1)
    return regs["rip"], handled, intr


def handler_at_return(pending, sigmask, sigactions):
    """sa_flags of the handler the kernel runs first when the task comes back with these
    pending signal numbers unblocked, or None if no handler runs then (signals ignored,
    stopping or fatal: a fatal one ends the task anyway).  Lowest number first, as the kernel
    takes them; sigactions: (handler, flags, restorer, mask) of signals 1..64."""
    for sig in sorted(set(pending)):
        if not 1 <= sig <= len(sigactions) or sigmask >> (sig - 1) & 1:
            continue
        handler, flags = sigactions[sig - 1][0], sigactions[sig - 1][1]
        if handler == SIG_IGN or handler == SIG_DFL and sig in _DEFAULT_IGNORED + _DEFAULT_STOP:
            continue
        return flags if handler != SIG_DFL else None
    return None


def patch_fpstate(xsave, xsize, xfeatures):
    """The XSAVE image as a sigframe fpstate: exactly xsize bytes, the header made valid for
    XRSTOR in the standard format (xstate_bv within xfeatures, xcomp_bv and the reserved header
    zero), the _fpx_sw_bytes at 464 (magic1, extended size, xfeatures, xstate size) and
    FP_XSTATE_MAGIC2 right after.  Without the sw bytes and magic2 the kernel silently restores
    the legacy FXSAVE part only (ymm/zmm upper halves and k-registers lost)."""
    if xsize < XSAVE_HEADER_END:
        raise ValueError(f"xsave size {xsize} is smaller than the legacy area and header")
    buf = bytearray(bytes(xsave[:xsize]).ljust(xsize, b"\0"))
    bv = struct.unpack_from("<Q", buf, XSTATE_BV_OFF)[0] & xfeatures
    struct.pack_into("<Q", buf, XSTATE_BV_OFF, bv)
    buf[XCOMP_BV_OFF:XSAVE_HEADER_END] = bytes(XSAVE_HEADER_END - XCOMP_BV_OFF)
    sw = struct.pack("<IIQI7I", FP_XSTATE_MAGIC1, xsize + 4, xfeatures, xsize, *([0] * 7))
    buf[SW_BYTES_OFF:SW_BYTES_OFF + len(sw)] = sw
    return bytes(buf) + struct.pack("<I", FP_XSTATE_MAGIC2)


def frame_address(rsp, xsize):
    """(F, fpstate address) as the kernel's get_sigframe() would place them below rsp."""
    fp = (rsp - REDZONE - (xsize + 4)) & ~63
    frame = ((fp - FRAME_HEAD) & ~15) - 8
    return frame, fp


def build_sigframe(regs, xsave, xsize, xfeatures, sigmask, altstack=(0, 2, 0), pretcode=0,
                   handler_flags=None, sigactions=None):
    """The rt_sigframe for `regs` (a dict with REG_NAMES keys, as in user_regs_struct).

    xsave: the raw XSAVE image (standard format); xsize/xfeatures: this CPU's XSAVE size and
    XCR0; sigmask: the blocked set (u64); altstack: (ss_sp, ss_flags, ss_size), SS_DISABLE=2 by
    default; pretcode: the return address the self-unmap gadget pops (the task's restorer);
    handler_flags: see restart_fixup; sigactions (of signals 1..64): for restart_masks."""
    r = restart_fixup(regs, handler_flags)
    frame, fp = frame_address(r["rsp"], xsize)
    fpstate = patch_fpstate(xsave, xsize, xfeatures)
    data = bytearray(fp - frame + len(fpstate))
    struct.pack_into("<QQQ", data, 0, pretcode, UC_FLAGS, 0)
    sp, flags, size = altstack
    struct.pack_into("<QiiQ", data, UCONTEXT_OFF + 16, sp, flags, 0, size)
    gprs = [r[name] & (1 << 64) - 1 for name in _GPR_ORDER]
    _SIGCONTEXT.pack_into(data, MCONTEXT_OFF, *gprs, r["cs"] & 0xffff, 0, 0, r["ss"] & 0xffff,
                          0, 0, 0, 0, fp, *([0] * 8))
    struct.pack_into("<Q", data, SIGMASK_OFF, sigmask)
    data[fp - frame:] = fpstate
    return Frame(addr=frame, data=bytes(data), fpstate=fp, restart=restart_masks(regs, r, sigmask, sigactions))
