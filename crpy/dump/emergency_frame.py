"""The emergency rt_sigframe: the task's way back if the dumper dies with the parasite inside.

Built in Python from the registers, XSAVE area and signal mask saved at seize, and written on
the task's own stack below its red zone before anything is injected.  Every injected state
(the mmap through gadget G, the running parasite, its self-cure) has rsp at this frame, so a
`ret` into the rt_sigreturn restorer R returns the task to exactly where it was stopped.

Layout (x86_64): pretcode | ucontext (uc_flags, uc_link, uc_stack, sigcontext, uc_sigmask) |
siginfo = 440 bytes, 16-byte aligned minus 8 like a real signal frame; the XSAVE image follows,
64-byte aligned, with its software-reserved bytes made into a signal frame's _fpx_sw_bytes.
"""

import struct

RED_ZONE = 128
FRAME_SIZE = 440
UC_FLAGS = 1 | 2 | 4  # UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
# An invalid ss_flags: rt_sigreturn's sigaltstack restore fails with EINVAL, which it ignores,
# so the task's own altstack is left as it is and we never need to know it.
SS_FLAGS_INVALID = 4
SW_BYTES_OFF = 464  # in the FXSAVE area; the ptrace image keeps XCR0 there
RESTART_CODES = (-512, -513, -514, -516)  # ERESTARTSYS, NOINTR, NOHAND, RESTART_BLOCK

_SIGCONTEXT_REGS = ("r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx rsp rip eflags").split()


class Frame:
    """Where the frame goes: `addr` (the rsp to use), `start`/`data` (the bytes to write)."""

    def __init__(self, addr, start, data):
        self.addr, self.start, self.data = addr, start, data

    @property
    def end(self):
        return self.start + len(self.data)


def sigframe_xstate(xstate):
    """The ptrace XSAVE image made valid for a signal frame (sw bytes + trailing magic2).

    ptrace gives every component the kernel knows, AMX tile data included (11 KiB where the CPU
    has AMX); the frame holds only those a frame of this task may (xsave.frame_layout): from a
    frame bigger than the task's own, rt_sigreturn restores x87 and SSE alone and quietly puts
    AVX, AVX-512 and PKRU in their init state.  The bytes are made a frame's as the restore makes
    its own (crpy.restore.sigframe.patch_fpstate)."""
    from crpy.images import xsave
    from crpy.kernel import cpuid
    from crpy.restore.sigframe import patch_fpstate

    xcr0 = struct.unpack_from("<Q", xstate, SW_BYTES_OFF)[0]
    xstate_bv = struct.unpack_from("<Q", xstate, xsave.LEGACY_SIZE)[0]
    layout = xsave.frame_layout({c: p for c, p in cpuid.xsave_layout().items() if xcr0 >> c & 1}, xstate_bv)
    return patch_fpstate(xstate, min(len(xstate), xsave.layout_size(layout)), xsave.layout_mask(layout))


def restart_fixup(regs):
    """Registers as rt_sigreturn must leave them: rt_sigreturn sets orig_rax = -1, so the
    kernel would not restart an interrupted syscall; re-issue it ourselves instead."""
    r = regs.copy()
    if r.signed("orig_rax") >= 0 and r.signed("rax") in RESTART_CODES:
        r.rax = r.orig_rax
        r.rip -= 2
    return r


def restart_info(regs):
    """(rip just after the `syscall`, its -ERESTART* code) when the frame re-issues the
    task's interrupted syscall, else (0, 0): the parasite's self-cure ends that syscall with
    -EINTR instead when a signal whose handler would do so is pending (parasite_args)."""
    if restart_fixup(regs).rip == regs.rip:
        return 0, 0
    return regs.rip, regs.signed("rax")


def build(regs, xstate, sigmask, restorer):
    """The frame for a task stopped with `regs`; rt_sigreturn through `restorer` (address R)."""
    fpstate = sigframe_xstate(xstate)
    fp = (regs.rsp - RED_ZONE - len(fpstate)) & ~63
    addr = ((fp - FRAME_SIZE) & ~15) - 8
    buf = bytearray(fp + len(fpstate) - addr)
    r = restart_fixup(regs)

    struct.pack_into("<QQQ", buf, 0, restorer, UC_FLAGS, 0)  # pretcode, uc_flags, uc_link
    struct.pack_into("<QiiQ", buf, 24, 0, SS_FLAGS_INVALID, 0, 0)  # uc_stack
    sc = 48
    struct.pack_into("<18Q", buf, sc, *(getattr(r, n) & 0xFFFFFFFFFFFFFFFF for n in _SIGCONTEXT_REGS))
    struct.pack_into("<4H", buf, sc + 144, r.cs, 0, 0, r.ss)
    struct.pack_into("<4QQ", buf, sc + 152, 0, 0, 0, 0, fp)  # err, trapno, oldmask, cr2, fpstate
    struct.pack_into("<Q", buf, 304, sigmask)  # uc_sigmask; the siginfo after it stays zero
    buf[fp - addr:] = fpstate
    return Frame(addr, addr, bytes(buf))
