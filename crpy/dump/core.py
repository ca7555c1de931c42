"""Step: core-PID.img, the task's CPU and kernel state: registers and XSAVE, TLS base, signal mask
and handlers, altstack, rseq, clear_child_tid, robust list, creds, rlimits, comm, personality."""

import signal

from crpy.errors import DumpError
from crpy.kernel import proc

TASK_ALIVE, TASK_STOPPED = 1, 3
SS_DISABLE = 2
_GPREG_NAMES = {"rbp": "bp", "rbx": "bx", "rax": "ax", "rcx": "cx", "rdx": "dx", "rsi": "si",
                "rdi": "di", "orig_rax": "orig_ax", "rip": "ip", "eflags": "flags", "rsp": "sp"}


def gpregs_entry(regs):
    from crpy.images.pb import core_x86_pb2
    from crpy.kernel.ptrace import REG_NAMES

    e = core_x86_pb2.user_x86_regs_entry(mode=core_x86_pb2.NATIVE)
    for name in REG_NAMES:
        setattr(e, _GPREG_NAMES.get(name, name), getattr(regs, name))
    return e


def fpregs_entry(xstate, who):
    """The image entry of a task's XSAVE area, read in this CPU's layout (cpuinfo.img records it);
    who: "pid N" or "thread T", for the error."""
    from crpy.images import xsave
    from crpy.kernel import cpuid

    try:
        return _once(("fpregs", xstate), lambda: xsave.from_raw(xstate, cpuid.xsave_layout()))
    except ValueError as e:
        hint = ("AMX tiles are in use only inside an AMX computation: dump again a moment later"
                if "amx" in str(e) else None)
        raise DumpError(f"{who}: cannot save its XSAVE state: {e}", hint) from None


def _tls_slots():
    """The three GDT TLS slots, empty in a 64-bit task (CRIU writes them all the same)."""
    from crpy.images.pb import core_x86_pb2

    return [core_x86_pb2.user_desc_t(entry_number=n, base_addr=0, limit=0, seg_32bit=False,
                                     contents_h=False, contents_l=False, read_exec_only=True,
                                     limit_in_pages=False, seg_not_present=True, usable=False)
            for n in (12, 13, 14)]


def _once(key, build):
    """Entries built for one task and identical in the next ones (the tasks of a tree mostly
    share their signal handlers and rlimits).  core-PID.img holds its own copy of each (the image
    format has no shared table), so only the parsing and building is saved; the protobuf
    constructors copy what they are given, so one list serves every task.  Kept in the dump's
    memo, emptied when a dump begins: a long-lived caller (migrate rounds) does not collect them."""
    from crpy import resources

    built = resources.dump_memo.setdefault("core entries", {})
    entries = built.get(key)
    if entries is None:
        entries = built[key] = build()
    return entries


def sigaction_entries(sigactions):
    """sa_entry for signals 1..64 except SIGKILL and SIGSTOP (62 entries, as CRIU writes them)."""
    from crpy.images.pb import sa_pb2

    def build():
        return [sa_pb2.sa_entry(sigaction=h, flags=f, restorer=r, mask=m, compat_sigaction=False)
                for sig, (h, f, r, m) in enumerate(sigactions, 1) if sig not in (signal.SIGKILL, signal.SIGSTOP)]
    return _once(("sigactions", tuple(sigactions)), build)


def _signal_queue(raw_siginfos):
    from crpy.images.pb import siginfo_pb2

    return siginfo_pb2.signal_queue_entry(
        signals=[siginfo_pb2.siginfo_entry(siginfo=s) for s in raw_siginfos])


def _timers(misc):
    """itimers as the parasite read them: [real, virt, prof] of (isec, iusec, vsec, vusec), and
    the POSIX timers (crpy.dump.timers)."""
    from crpy.images.pb import timer_pb2

    timers = list(misc.get("itimers") or [None] * 3)
    one = lambda t: timer_pb2.itimer_entry(**dict(zip(("isec", "iusec", "vsec", "vusec"),  # noqa: E731
                                                      t or (0, 0, 0, 0))))
    return timer_pb2.task_timers_entry(real=one(timers[0]), virt=one(timers[1]), prof=one(timers[2]),
                                       posix=misc.get("posix_timers", []))


def _rlimits(pid, misc):
    """The task's 16 rlimits, as its own getrlimit told the parasite (misc), else as
    /proc/PID/limits shows them (the same values: a tree's dump reads no file per task)."""
    from crpy.images.pb import core_pb2, rlimit_pb2

    asked = list((misc.get("rlimits") or {}).values())
    if len(asked) == 16 and None not in asked:
        limits = tuple(asked)
    else:
        limits = tuple(proc.parse_limits(proc.read_text(pid, "limits")))
    return _once(("rlimits", limits), lambda: core_pb2.task_rlimits_entry(
        rlimits=[rlimit_pb2.rlimit_entry(cur=s, max=h) for s, h in limits]))


def task_core(facts, regs, sigactions, misc, stop_signal):
    from crpy.images.pb import core_pb2

    pid = facts.pid
    stopped = stop_signal in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
    tc = core_pb2.task_core_entry(
        task_state=TASK_STOPPED if stopped else TASK_ALIVE, exit_code=0,
        personality=misc["personality"] if "personality" in misc else proc.personality(pid), flags=facts.stat.flags,
        blk_sigset=regs.sigmask, comm=facts.comm, timers=_timers(misc), rlimits=_rlimits(pid, misc),
        signals_s=_signal_queue(regs.pending_shared), oom_score_adj=proc.oom_score_adj(pid),
        sigactions=sigaction_entries(sigactions), child_subreaper=bool(misc.get("child_subreaper", False)))
    if stopped:
        tc.stop_signo = stop_signal
    loginuid = _loginuid(pid)
    if loginuid is not None:
        tc.loginuid = loginuid
    membarrier = misc.get("membarrier", 0)
    if membarrier < 0:
        raise DumpError(f"pid {pid}: cannot tell its membarrier() registrations: errno {-membarrier}")
    if membarrier:
        tc.membarrier_registration_mask = membarrier
    from crpy.images.xsave import DYNAMIC_MASK

    dynamic = misc.get("xcomp_perm", 0) & DYNAMIC_MASK
    if dynamic:                       # asked for AMX: asked for again on restore
        tc.xcomp_perm_dynamic = dynamic
    return tc


def _loginuid(pid):
    """The task's audit login uid (None without audit).  Each thread has its own; the restore
    sets one for the whole task, so threads that differ are refused."""
    from crpy.errors import UnsupportedResource

    own = proc.loginuid(pid)
    for tid in proc.tasks(pid):
        theirs = proc.loginuid(pid, tid) if tid != pid else own
        if theirs != own:
            raise UnsupportedResource(pid, "thread with its own audit login uid",
                                      target=f"(thread {tid}: {theirs}, the task: {own})",
                                      hint="crpy restores one loginuid per task")
    return own


def thread_core(facts, regs, misc, creds):
    from crpy.images.pb import core_pb2, rseq_pb2

    from crpy.dump.task_state import dump_sched

    pid = facts.pid
    sp, flags, size = misc.get("altstack", (0, SS_DISABLE, 0))
    head, length = regs.robust_list
    tc = core_pb2.thread_core_entry(
        futex_rla=head, futex_rla_len=length, **dump_sched(pid), blk_sigset=regs.sigmask,
        sas=core_pb2.thread_sas_entry(ss_sp=sp, ss_size=size, ss_flags=flags),
        pdeath_sig=misc.get("pdeathsig", 0), signals_p=_signal_queue(regs.pending), creds=creds,
        seccomp_mode=facts.status.seccomp, comm=facts.comm)
    if misc.get("timerslack", -1) >= 0:
        tc.timerslack_ns = misc["timerslack"]
    if regs.rseq["pointer"]:
        tc.rseq_entry.CopyFrom(rseq_pb2.rseq_entry(rseq_abi_pointer=regs.rseq["pointer"],
                                                   rseq_abi_size=regs.rseq["size"],
                                                   signature=regs.rseq["signature"]))
    return tc


def core_entry(facts, regs, sigactions, misc, creds, stop_signal):
    from crpy.images.pb import core_pb2, core_x86_pb2

    info = core_x86_pb2.thread_info_x86(
        clear_tid_addr=misc.get("tid_address", 0), gpregs=gpregs_entry(regs.regs),
        fpregs=fpregs_entry(regs.xstate, f"pid {facts.pid}"), tls=_tls_slots())
    return core_pb2.core_entry(mtype=core_pb2.core_entry.X86_64, thread_info=info,
                               tc=task_core(facts, regs, sigactions, misc, stop_signal),
                               thread_core=thread_core(facts, regs, misc, creds))
