"""Dump: the threads of a task besides its leader.

seize_threads() stops every other thread of the task (listing /proc/PID/task again until a pass
finds no new thread, so none escapes by creating threads meanwhile).  dump_threads() then reads,
per thread, what ptrace tells (registers, XSAVE, signal mask, private pending signals, rseq,
robust list) and what only the thread itself can tell (clear_child_tid, altstack), asked through
a short parasite visit in that very thread, and writes core-TID.img (thread_info and
thread_core, as CRIU does for its non-leader threads).
"""

import os

from crpy.errors import CrpyError, NoSuchProcess
from crpy.log import log


def list_threads(pid):
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise NoSuchProcess(pid) from None


def seize_threads(pid, seized):
    """Seize every thread of pid but the leader (already seized), appending each TID to the
    list `seized` as soon as it is seized (so that an error midway still detaches them)."""
    from crpy.kernel import ptrace

    while True:
        new = [t for t in list_threads(pid) if t != pid and t not in seized]
        if not new:
            break
        started = []
        for tid in new:
            try:
                ptrace.seize_nowait(tid)
            except CrpyError:
                if os.path.exists(f"/proc/{pid}/task/{tid}"):
                    raise
                continue              # exited between listing and seizing
            seized.append(tid)
            started.append(tid)
        for tid in started:           # all stop in parallel; collect each event-stop
            ptrace.wait_event_stop(tid)
    seized.sort()
    if seized:
        log.info("Seized %d more threads of %d", len(seized), pid)


def detach_threads(tids):
    from crpy.kernel import ptrace

    for tid in tids:
        try:
            ptrace.detach(tid)
        except CrpyError as e:
            log.warning("Detaching thread %d: %s", tid, e.one_line())


def reap_threads(tids):
    """After a SIGKILL: a traced thread stays a zombie until its tracer waits for it, and the
    leader's exit is only reported once every thread is gone."""
    for tid in tids:
        try:
            while True:
                _, status = os.waitpid(tid, 0x40000000)          # __WALL
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    break
        except ChildProcessError:
            pass


def dump_threads(images_dir, tids, creds):
    """core-TID.img for each thread in tids (the leader's own core is written elsewhere)."""
    from crpy.images import framing

    for tid in tids:
        _check_thread(tid)
    for tid in tids:
        core = _thread_core_entry(tid, _thread_misc(tid), creds)
        framing.write_image(framing.image_path(images_dir, "core", tid), "core", [core])
    if tids:
        log.info("Dumped %d threads", len(tids))


def _check_thread(tid):
    """Seccomp is per thread: a filtered thread must not lose its filter silently."""
    from crpy.errors import UnsupportedResource
    from crpy.kernel import proc

    mode = proc.status(tid).seccomp
    if mode:
        kind = {1: "strict", 2: "filter"}.get(mode, str(mode))
        raise UnsupportedResource(tid, "seccomp", target=f"(thread {tid}, mode {kind})",
                                  hint="crpy cannot dump a task under seccomp yet")


def _thread_misc(tid):
    """clear_child_tid, altstack and name, from a parasite in the thread."""
    from crpy.dump.infection import infected

    with infected(tid) as infection:
        misc = dict(infection.parasite.misc())
        infection.cure()
    return misc


def _thread_core_entry(tid, misc, creds):
    from crpy.dump.core import SS_DISABLE, fpregs_entry, gpregs_entry
    from crpy.dump.regs import dump_regs
    from crpy.dump.task_state import dump_sched
    from crpy.images.pb import core_pb2, core_x86_pb2, rseq_pb2, siginfo_pb2

    regs = dump_regs(tid)
    sp, flags, size = misc.get("altstack", (0, SS_DISABLE, 0))
    head, length = regs.robust_list
    tc = core_pb2.thread_core_entry(
        futex_rla=head, futex_rla_len=length, blk_sigset=regs.sigmask, **dump_sched(tid),
        sas=core_pb2.thread_sas_entry(ss_sp=sp, ss_size=size, ss_flags=flags),
        signals_p=siginfo_pb2.signal_queue_entry(
            signals=[siginfo_pb2.siginfo_entry(siginfo=s) for s in regs.pending]),
        creds=creds, comm=_thread_comm(tid))
    if regs.rseq["pointer"]:
        tc.rseq_entry.CopyFrom(rseq_pb2.rseq_entry(rseq_abi_pointer=regs.rseq["pointer"],
                                                   rseq_abi_size=regs.rseq["size"],
                                                   signature=regs.rseq["signature"]))
    if misc.get("timerslack", -1) >= 0:
        tc.timerslack_ns = misc["timerslack"]
    info = core_x86_pb2.thread_info_x86(
        clear_tid_addr=misc.get("tid_address", 0), gpregs=gpregs_entry(regs.regs),
        fpregs=fpregs_entry(regs.xstate, f"thread {tid}"))
    return core_pb2.core_entry(mtype=core_pb2.core_entry.X86_64, thread_info=info, thread_core=tc)


def _thread_comm(tid):
    try:
        with open(f"/proc/{tid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return ""
