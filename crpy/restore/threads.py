"""Restore: the threads of a task besides its leader (core-TID.img of every TID of the pstree
entry), read before the fork, and handed to the restorer blob as struct rst_thread entries.

The blob creates each thread with clone3 and its saved TID (fs base as TLS, clear_child_tid),
the thread sets its gs base, rseq, robust list, name, timer slack, nice and scheduling policy
and creds, copies its own rt_sigframe (built here,
like the leader's) onto its stack and leaves through rt_sigreturn: registers, XSAVE, signal
mask and altstack all come from that frame.  Its private pending signals are queued again by
the leader while every thread still blocks all signals.
"""

from crpy.errors import RestoreError
from crpy.record import dataclass, field


@dataclass
class ThreadImage:
    tid: int
    regs: dict
    xsave: bytes
    sigmask: int
    altstack: tuple            # (ss_sp, ss_flags, ss_size)
    tid_address: int
    robust_list: tuple         # (head, len)
    rseq: tuple = None         # (pointer, size, signature)
    comm: str = ""
    timerslack_ns: int = 0
    sched: tuple = None        # (nice, policy, rt priority)
    pending: list = field(default_factory=list)   # raw 128-byte siginfos, private queue


def load_threads(images_dir, item):
    """ThreadImage of every thread of pstree entry `item` but its leader."""
    from crpy.images import framing

    out = []
    for tid in item.threads:
        if tid == item.pid:
            continue
        path = framing.image_path(images_dir, "core", tid)
        cores = framing.read_image(path, "core")
        if len(cores) != 1 or not cores[0].HasField("thread_info"):
            raise framing.entry_error(path, "expected one thread core with thread_info", 1 if cores else 0)
        out.append(thread_from_core(path, tid, cores[0]))
    return out


def thread_from_core(path, tid, core):
    from crpy.restore.load import _GPREG_FIELDS, _reg_names, _xsave_bytes

    ti, th = core.thread_info, core.thread_core
    if ti.gpregs.mode != 1:
        raise RestoreError(f"thread {tid} is a 32-bit (compat) thread; crpy restores 64-bit tasks")
    rseq = None
    if th.HasField("rseq_entry") and th.rseq_entry.rseq_abi_pointer:
        r = th.rseq_entry
        rseq = (r.rseq_abi_pointer, r.rseq_abi_size, r.signature)
    return ThreadImage(
        tid=tid, regs={n: getattr(ti.gpregs, _GPREG_FIELDS.get(n, n)) for n in _reg_names()},
        xsave=_xsave_bytes(path, ti.fpregs), sigmask=th.blk_sigset,
        altstack=(th.sas.ss_sp, th.sas.ss_flags, th.sas.ss_size) if th.HasField("sas") else (0, 2, 0),
        tid_address=ti.clear_tid_addr, robust_list=(th.futex_rla, th.futex_rla_len), rseq=rseq,
        comm=th.comm, pending=[bytes(s.siginfo) for s in th.signals_p.signals],
        timerslack_ns=th.timerslack_ns if th.HasField("timerslack_ns") else 0,
        sched=(th.sched_nice, th.sched_policy, th.sched_prio) if th.HasField("sched_policy") else None)


def fill_threads(ffi, lib, a, threads, pretcode, task_sigactions):
    """struct rst_thread for each thread; their private signals join the leader's list.
    task_sigactions: the task's handlers (a pending signal may end a thread's syscall)."""
    from crpy.restore import sigframe
    from crpy.restore.blob import siginfo_list

    if len(threads) > lib.RST_MAX_THREADS:
        raise RestoreError(f"{len(threads) + 1} threads; the restorer takes at most {lib.RST_MAX_THREADS + 1}")
    from crpy.cpuinfo import frame_xsave

    xsize, xcr0 = frame_xsave()
    n, entries = a.nr_siginfo, siginfo_list(a)
    for i, th in enumerate(threads):
        t = a.threads[i]
        t.tid, t.fs_base, t.gs_base = th.tid, th.regs["fs_base"], th.regs["gs_base"]
        t.tid_address, t.timerslack_ns = th.tid_address, th.timerslack_ns
        if th.sched:
            t.has_sched = 1
            t.nice, t.sched_policy, t.sched_prio = th.sched
        t.robust_list, t.robust_list_len = th.robust_list
        if th.rseq:
            t.rseq_ptr, t.rseq_len, t.rseq_sig = th.rseq
        comm = th.comm.encode()[:15]
        ffi.memmove(t.comm, comm + b"\0", len(comm) + 1)
        pending = [int.from_bytes(info[:4], "little") for info in th.pending]     # its own queue
        frame = sigframe.build_sigframe(th.regs, th.xsave, xsize, xcr0, th.sigmask, th.altstack, pretcode,
                                        sigframe.handler_at_return(pending, th.sigmask, task_sigactions))
        if len(frame.data) > lib.RST_MAX_FRAME:
            raise RestoreError(f"signal frame of thread {th.tid} ({len(frame.data)} bytes) is too big")
        t.frame_addr, t.frame_len = frame.addr, len(frame.data)
        ffi.memmove(t.frame, frame.data, len(frame.data))
        for info in th.pending:           # room made by new_args (blob.nr_siginfo counts these)
            entries[n].shared, entries[n].tid = 0, th.tid
            ffi.memmove(entries[n].info, info[:128].ljust(128, b"\0"), 128)
            n += 1
    a.nr_siginfo = n
    a.nr_threads = len(threads)
