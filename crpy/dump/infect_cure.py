"""Getting the parasite out again, leaving the task exactly as it was seized.

Normal cure (after parasite-recipe.md fact 13): send FINISH (the parasite closes its fds but
the channel and waits on it), interrupt it, inject close(channel) and munmap(parasite) through
G, then INTERRUPT + CONT so the task takes an event-stop before returning to user mode, and put
back signal mask, XSAVE area and registers there.  Restoring at an event-stop lets the kernel's own restart logic see the original
orig_rax/rax, so a syscall the task was sleeping in restarts exactly.

Forced unload (the parasite faulted, hung or broke the protocol, and the dumper is alive):
take the task at whatever stop it is in, close the fds the parasite left and munmap it with
injected syscalls through G, then restore the same way.
"""

import os

from crpy import faults
from crpy.dump import infect_mem
from crpy.dump.infect import inject_syscall, inject_syscalls
from crpy.dump.infect_channel import FINISH
from crpy.errors import KernelError, ParasiteError
from crpy.kernel import ptrace
from crpy.log import log

NR_CLOSE, NR_MUNMAP = 3, 11


def to_event_stop(pid):
    """From a syscall-stop: stop again before the task returns to user mode."""
    ptrace.interrupt(pid)
    ptrace.cont(pid)
    _wait_stop(pid, want_event=True)


def _wait_stop(pid, want_event=False):
    status = ptrace.wait(pid)
    if want_event and not ptrace.is_event_stop(status):
        raise ParasiteError(f"pid {pid}: expected an event-stop, got {ptrace.describe_status(status)}")
    return status


def restore_saved(saved):
    """Signal mask, XSAVE area, registers and the stack bytes under the frame, as seized."""
    pid = saved.pid
    if saved.seccomp_suspended:
        ptrace.set_options(pid, ptrace.O_TRACESYSGOOD)
        saved.seccomp_suspended = False
    ptrace.set_sigmask(pid, saved.sigmask)
    ptrace.set_xstate(pid, saved.xstate)
    ptrace.set_regs(pid, saved.regs)
    if saved.frame is not None and saved.stack_bytes is not None:
        infect_mem.write(pid, saved.frame.start, saved.stack_bytes)
    if saved.stopped_by:  # it was group-stopped: it stops again once let go
        os.kill(pid, saved.stopped_by)
        saved.stopped_by = 0


def cure(saved, channel, finish_sent=False):
    """The normal path; the task ends seized, at an event-stop, with its original state.
    finish_sent: FINISH was sent already (crpy.dump.parasite.Parasite.ask), only its answer is read.

    FINISH makes the parasite close its fds but the channel and wait on it; the task is
    interrupted in that wait and the close of the channel and the munmap are injected: six
    stops per task where stepping the parasite through its own cure took fifteen."""
    finish_cure(saved, channel, begin_cure(saved, channel, finish_sent))


def begin_cure(saved, channel, finish_sent=False):
    """cure()'s first half: FINISH answered, the task interrupted in its wait on the channel;
    -> the channel's fd in the task, for finish_cure.  Between the two the caller may work while
    the task takes its stop (a dump does the task's fds)."""
    pid = saved.pid
    if _is_stopped(pid) is not None:  # a stop already reported (a fault): no normal cure
        raise ParasiteError(f"pid {pid}: the parasite is stopped, not idle")
    if not finish_sent:
        channel.send(FINISH)
    sock, _, _ = channel.receive(FINISH, timeout=5)
    ptrace.interrupt(pid)
    return sock


def finish_cure(saved, channel, sock):
    """cure()'s second half, from begin_cure's interrupt on.  A lone cure (a thread's, a
    pre-dump's, one after an error) has no mid-cure fault point: Parasite.cure unloads by force
    after a ParasiteError only, not after the point's DumpError."""
    finish_cures([(saved, channel, sock)], mid_cure_point=False)


def finish_cures(items, mid_cure_point=True):
    """finish_cure of several tasks at once, [(saved, channel, sock)]: each of its stops is asked
    of every task before any is waited for, so the tasks run to them side by side (a tree's dump
    waits for the scheduler once per step, not once per task and step).  After an error the
    tasks not cured yet are to be settled (crpy.dump.infect.settle) and unloaded by force;
    -> nothing, each cured one's channel is closed.  mid_cure_point: the fault point "mid-cure"
    (crpy.faults) is reached in each task between the close of its channel and the munmap."""
    for saved, _, _ in items:
        status = _wait_stop(saved.pid)
        if not ptrace.is_event_stop(status):
            raise ParasiteError(f"pid {saved.pid}: parasite stopped: {ptrace.describe_status(status)}")
    for (saved, _, sock), rval in zip(items, inject_syscalls([(saved, NR_CLOSE, (sock,)) for saved, _, sock in items])):
        if rval != 0:
            raise ParasiteError(f"pid {saved.pid}: closing the parasite's channel (fd {sock}) failed: "
                                f"{os.strerror(-rval)}")
    for saved, _, _ in items:
        if mid_cure_point:
            faults.point("mid-cure", saved.pid)
    calls = [(saved, NR_MUNMAP, (saved.map_base, saved.map_len)) for saved, _, _ in items]
    for (saved, _, _), rval in zip(items, inject_syscalls(calls)):
        if rval != 0:
            raise ParasiteError(f"pid {saved.pid}: munmap of the parasite failed: {os.strerror(-rval)}")
        saved.map_base = 0
    for saved, _, _ in items:          # to_event_stop, side by side
        ptrace.interrupt(saved.pid)
        saved.resumed = True
        ptrace.cont(saved.pid)
    for saved, channel, _ in items:
        saved.resumed = False
        _wait_stop(saved.pid, want_event=True)
        restore_saved(saved)
        channel.close()


def _is_stopped(pid):
    try:
        return ptrace.get_regs(pid)
    except KernelError:
        return None


def _parasite_inside(saved, regs):
    """Is the task still under our control (in the blob, or in a syscall injected through G
    with rsp at the frame)?  If not, the parasite already cured itself and the task has run
    its own code since: then its current state is the right one and must not be touched."""
    in_blob = saved.map_base <= regs.rip < saved.map_base + saved.map_len
    at_gadget = (regs.rip in (saved.gadget, saved.gadget + 2)
                 and regs.rsp in (saved.syscall_sp, saved.frame.addr))
    return in_blob or at_gadget


def _still_mapped(saved):
    for m in infect_mem.mappings(saved.pid):
        if m.start == saved.map_base and m.end == saved.map_base + saved.map_len:
            return True
    return False


def force_unload(saved):
    """Undo whatever the infection did, from any state the dumper can still reach; the task
    ends seized and at an event-stop."""
    pid = saved.pid
    regs, status = _is_stopped(pid), 0
    if regs is None:
        ptrace.interrupt(pid)
        status = _wait_stop(pid)
        regs = ptrace.get_regs(pid)
    if not saved.injected:
        restore_saved(saved)
        return
    if not _parasite_inside(saved, regs):
        log.warning("pid %d: the parasite had already cured itself; the task ran on", pid)
        if os.WIFSTOPPED(status) and status >> 16 == 0:  # the task's own signal: keep it
            ptrace.interrupt(pid)
            ptrace.cont(pid, os.WSTOPSIG(status))
            ptrace.wait_event_stop(pid)
        return
    for fd in sorted(set(os.listdir(f"/proc/{pid}/fd")) - saved.fds, key=int):
        inject_syscall(saved, NR_CLOSE, int(fd))
    if saved.map_base and _still_mapped(saved):
        rval = inject_syscall(saved, NR_MUNMAP, saved.map_base, saved.map_len)
        if rval != 0:
            raise ParasiteError(f"pid {pid}: munmap of the parasite failed: {os.strerror(-rval)}")
    saved.map_base = 0
    to_event_stop(pid)
    restore_saved(saved)
