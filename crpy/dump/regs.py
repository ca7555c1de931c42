"""Step: what ptrace tells of the stopped (and cured) task: general registers, the full XSAVE
area, the signal mask, rseq registration, robust futex list and pending signals."""

from crpy.log import log
from crpy.record import dataclass


@dataclass
class TaskRegs:
    regs: object              # crpy.kernel.ptrace.Regs
    xstate: bytes             # raw XSAVE (NT_X86_XSTATE)
    sigmask: int
    rseq: dict                # pointer, size, signature, flags
    robust_list: tuple        # (head, len)
    pending: list             # raw 128-byte siginfos, private queue
    pending_shared: list


def robust_list(pid):
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import NR, sys_call

    head, size = ffi.new("unsigned long *"), ffi.new("size_t *")
    sys_call(NR.get_robust_list, pid, head, size, what=f"get_robust_list of pid {pid}", pid=pid)
    return head[0], size[0]


def dump_regs(pid, saved=None):
    """saved: the infection's crpy.dump.infect.Saved of the cured task.  The cure set exactly its
    registers, XSAVE area and signal mask back (infect_cure.restore_saved) and the task has not
    run since, so they are taken from it instead of asked for again (four ptrace calls: the rseq
    registration too)."""
    from crpy.kernel import ptrace

    rseq = None
    if saved is not None:
        regs, xstate, sigmask, rseq = saved.regs.copy(), saved.xstate, saved.sigmask, saved.rseq_config
    else:
        regs, xstate, sigmask = ptrace.get_regs(pid), ptrace.get_xstate(pid), ptrace.get_sigmask(pid)
    r = TaskRegs(regs=regs, xstate=xstate, sigmask=sigmask, rseq=rseq or ptrace.get_rseq_config(pid),
                 robust_list=robust_list(pid), pending=ptrace.peek_siginfo(pid),
                 pending_shared=ptrace.peek_siginfo(pid, shared=True))
    log.info("Registers of %d: rip %#x rsp %#x orig_rax %d, %d bytes of XSAVE, sigmask %#x",
             pid, r.regs.rip, r.regs.rsp, r.regs.signed("orig_rax"), len(r.xstate), r.sigmask)
    return r
