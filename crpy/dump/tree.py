"""Tree steps of the dump: seize every task under the root so none escapes by forking
(seize, re-list the children of every seized task, repeat until a pass finds nothing new),
describe the tree for pstree.img, and kill the whole tree at the end.

Zombies are not seized (ptrace cannot): they are recorded with the wait status their parent
will collect, and dumped as a core with task_state = dead."""

import contextlib
import os
import signal

from crpy.errors import CrpyError
from crpy.kernel import proc
from crpy.log import log
from crpy.record import dataclass, field


@dataclass
class TreeTask:
    pid: int
    ppid: int                         # 0 for the root
    seized: object = None             # crpy.dump.seize.SeizedTask, None for a zombie
    zombie: bool = False
    exit_code: int = 0                # wait status of a zombie
    pgid: int = 0
    sid: int = 0
    children: list = field(default_factory=list)
    plans: list = None                # its VmaPlans once dumped (its children compare against them)
    comm: str = ""                    # a zombie's name
    files_id: int = 0                 # ids.files_id: its own, or its parent's when it shares the fd table


@contextlib.contextmanager
def seize_tree(root):
    """Yield the tasks of the tree under `root`, parents before children, all seized (or
    zombies).  On the way out every task still seized is detached exactly as it was."""
    from crpy.dump.seize import seized
    from crpy.dump.target import check_before_seize

    with contextlib.ExitStack() as stack:
        check_before_seize(root)
        tasks = {root: TreeTask(root, 0, stack.enter_context(seized(root)))}
        order = [tasks[root]]
        while _seize_new_children(tasks, order, stack, seized):
            pass
        log.info("Seized a tree of %d tasks under %d", len(order), root)
        yield order


def _seize_new_children(tasks, order, stack, seized):
    """One pass over every live task; True if it found a child not seen before.  The new
    children of the pass are checked, then seized and interrupted all at once, then their
    stops collected: they stop in parallel instead of one round trip each."""
    new_kids = []
    for t in list(order):
        if t.zombie:
            continue
        new_kids += [(kid, t) for kid in proc.children(t.pid) if kid not in tasks]
    interrupted = _interrupt_all([kid for kid, _ in new_kids], stack, seized)
    for kid, t in new_kids:
        if kid in interrupted:
            new = interrupted[kid]
        else:
            new = _seize_child(kid, t.pid, stack, seized)
        if new is None:
            continue              # gone meanwhile (reaped by its parent before the stop)
        new.ppid = t.pid
        tasks[kid] = new
        order.append(new)
        t.children.append(kid)
    return bool(new_kids)


def _interrupt_all(pids, stack, seized):
    """{pid: TreeTask} of the pids that SEIZE + INTERRUPT took at once (each checked first, as
    _seize_child does; a check's refusal leaves the tree as it was).  A pid that is a zombie,
    or that these calls could not take (it was exiting) is left out: _seize_child then looks
    at it again, one at a time."""
    from crpy.dump.target import check_before_seize
    from crpy.errors import NoSuchProcess
    from crpy.kernel import ptrace

    candidates = []
    for pid in pids:
        try:
            st = proc.stat(pid)
            if st.state == "Z":
                continue
            check_before_seize(pid, st)
        except NoSuchProcess:
            continue
        candidates.append(pid)
    waiting = []
    try:
        for pid in candidates:
            try:
                ptrace.seize_nowait(pid)
            except CrpyError:
                continue
            waiting.append(pid)
        out = {}
        while waiting:
            pid = waiting[0]
            try:
                out[pid] = TreeTask(pid, 0, stack.enter_context(seized(pid, interrupted=True)))
            except NoSuchProcess:
                pass              # died after the seize: _seize_child sees its zombie
            waiting.pop(0)
        return out
    finally:
        for pid in waiting:       # an error above: the ones seized but not yet collected go back
            _let_go(pid)


def _let_go(pid):
    from crpy.kernel import ptrace

    try:
        ptrace.wait_event_stop(pid)
        ptrace.detach(pid)
    except CrpyError as e:
        log.warning("Detaching %d: %s", pid, e.one_line())


def _seize_child(pid, ppid, stack, seized):
    """TreeTask of a new child: seized, or a zombie; None if it is gone (reaped meanwhile)."""
    from crpy.dump.target import check_before_seize
    from crpy.errors import NoSuchProcess

    for attempt in (1, 2):
        try:
            st = proc.stat(pid)
            if st.state == "Z" and proc.status(pid).threads == 1:
                break
            check_before_seize(pid, st)   # UnsupportedResource: the dump stops here, nothing touched
        except NoSuchProcess:
            return None
        try:
            return TreeTask(pid, ppid, stack.enter_context(seized(pid)))
        except CrpyError:
            if attempt == 2:
                raise                 # else it died between listing and seizing: look again
    code = proc.exit_code(pid)
    log.info("Task %d is a zombie (wait status %#x)", pid, code)
    return TreeTask(pid, ppid, zombie=True, exit_code=code, pgid=st.pgrp, sid=st.session, comm=st.comm)


def pstree_entries(tasks):
    from crpy.images.pb import pstree_pb2

    return [pstree_pb2.pstree_entry(pid=t.pid, ppid=t.ppid, pgid=t.pgid, sid=t.sid,
                                    threads=[t.pid] + (t.seized.threads if t.seized else []))
            for t in tasks]


def zombie_core(task):
    """core-PID.img of a zombie: only its state and the status its parent will see."""
    from crpy.images.pb import core_pb2

    TASK_DEAD = 2
    tc = core_pb2.task_core_entry(task_state=TASK_DEAD, exit_code=task.exit_code, personality=0,
                                  flags=0, blk_sigset=0, comm=task.comm)
    return core_pb2.core_entry(mtype=core_pb2.core_entry.X86_64, tc=tc)


def kill_tree(tasks):
    """SIGKILL every live task first (none may fork or reap meanwhile) and collect each exit as
    its tracer.  Reaping the zombies is their parents' business (an orphan's is init's, which
    may take a second or more): as with criu the dump does not wait for it; a restore waits for
    a saved PID that is still a zombie (crpy.restore.tree.check_pids_free)."""
    from crpy.dump.threads import reap_threads

    live = [t.seized for t in tasks if t.seized is not None]
    for t in live:
        try:
            os.kill(t.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        t.killed = True
    for t in live:
        _release_memory(t.pid)
    for t in live:
        reap_threads(t.threads)
        _collect_exit(t.pid)
    log.info("Tree of %d tasks killed", len(tasks))


def _release_memory(pid):
    """Free the memory of a killed task from here (process_mrelease), beside its own exit on the
    other CPU: a 1 GiB task takes about 0.1 s to exit, and the dump waits for that exit.
    Best effort: an error (task gone already, mm shared with a live task) only costs time."""
    from crpy.kernel._sys import lib
    from crpy.kernel.syscalls import NR

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        lib.crpy_syscall6(NR.process_mrelease, pidfd, 0, 0, 0, 0, 0)   # Linux 5.15
    finally:
        os.close(pidfd)


def _collect_exit(pid):
    try:
        while True:
            _, status = os.waitpid(pid, 0x40000000)   # __WALL: as tracer we see the exit
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                return
    except ChildProcessError:
        pass
