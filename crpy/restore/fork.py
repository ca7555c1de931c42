"""Restore of a process tree, the tasks' side.  crpy forks the root with its saved PID; every
task then, in its own process:

    session (setsid / own group) -> premap its memory -> fork its children (clone3 with their
    PIDs; each does the same, and takes the pages it shared with its parent from the parent's
    premapped copy) -> join its process group -> the rest of its own restore
    (crpy.restore.child) -> "ok PID" on the report pipe -> wait for crpy's go byte -> jump

A zombie is a task that, after the go, exits with the saved wait status: its parent reaps it
after the restore and sees what it would have seen.  Session leaders set up their session
before forking, so members inherit it; group leaders make their group before forking, and a
member whose leader is not an ancestor waits (briefly) for that group to appear.
"""

import os
import signal
import time

from crpy.errors import CrpyError, RestoreError
from crpy.kernel.libc import libc
from crpy.log import log

GROUP_WAIT_S = 5.0


class TreeRun:
    """What every task of one restore shares (inherited through fork)."""

    def __init__(self, report_fd, go_fd, keep_above, nodes):
        from crpy.restore.tree import files_sharers

        self.report_fd, self.go_fd, self.keep_above = report_fd, go_fd, keep_above
        self.nodes = {n.pid: n for n in nodes}
        self.pids = set(self.nodes)
        self.sharers = files_sharers(self.nodes)
        # process groups the restore makes: led by a task, or by a helper for a leader that is gone
        self.groups = self.pids | {n.helper_pgid for n in nodes if n.helper_pgid}
        self.core_dir = _core_dir(nodes)
        if self.core_dir:         # a failed restore too: crpy removes it at the latest as it exits
            import shutil
            import weakref

            self._drop = weakref.finalize(self, shutil.rmtree, self.core_dir, True)

    def drop_core_dir(self):
        """Once every task runs (the zombies are dead, their cores written): the cores go."""
        if self.core_dir:
            self._drop()


def _core_dir(nodes):
    """A directory for the cores of the zombies that died with one (None if none did): the
    wait status says "core dumped" only after a real core dump.  Checked before any fork."""
    dumped = [n.pid for n in nodes if n.zombie and os.WIFSIGNALED(n.exit_code) and os.WCOREDUMP(n.exit_code)]
    if not dumped:
        return None
    import resource
    import tempfile   # only here: it imports random, whose at-fork hook would run in every task
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        raise RestoreError(f"pid {dumped[0]} is a zombie that dumped core, and crpy's RLIMIT_CORE hard "
                           "limit is 0: it cannot die the same way", "restore with a non-zero core limit")
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith(("|", "/")):
        log.warning("zombies %s dumped core: their cores go where core_pattern says (%s)", dumped, pattern)
    return tempfile.mkdtemp(prefix="crpy-cores-")


def fork_node(node, run, close_in_child=()):
    """Fork `node` with its saved PID; in the child become it (never returns).  A task that
    shares its parent's fd table is cloned into it (CLONE_FILES)."""
    from crpy.kernel.clone import CLONE_FILES, fork_with_pid

    if node.task is not None:
        from crpy.restore.child import plan_for_child

        node.plan = plan_for_child(node.task)
    if node.helper_sid or node.helper_pgid:
        if node.shares_files:
            raise RestoreError(f"pid {node.pid} shares its parent's fd table but must be forked by a "
                               f"helper (its session or group leader is gone)")
        return _fork_through_helper(node, run)
    parent = os.getpid()
    pid = fork_with_pid(node.pid, CLONE_FILES if node.shares_files else 0)
    if pid == 0:
        for fd in close_in_child:
            os.close(fd)
        _run_node(node, run, parent)
    return pid


COLLAPSE_MIN = 16              # children in one batch from which crpy's heap is collapsed first


def fork_batch(kids, run, region=None):
    """Fork `kids` (none sharing this task's fd table) in their order: each run of those forked
    directly in one C call (crpy.kernel.clone.fork_many), their plans made before it, and the
    leaves among them with their whole restore compiled for C (crpy.restore.leaf), most of them
    forked by the first (_spawned_by_a_leaf); those that need a helper one by one (fork_node).
    region: (start, end) of this task's restorer region (its premapped memory), which
    collapse_heap leaves alone."""
    from crpy.kernel.clone import fork_many
    from crpy.restore import leaf
    from crpy.restore.child import plan_for_child

    collapse = True
    pool = leaf.Pool()
    parent_slots = getattr(run.nodes.get(os.getpid()), "slots", None) or {}
    batch, programs, compiled = [], [], 0
    try:
        for pos, kid in enumerate(kids + [None]):     # (None: the end, fork what is left)
            if kid is not None and not (kid.helper_sid or kid.helper_pgid):
                if kid.task is not None:
                    kid.plan = plan_for_child(kid.task)
                batch.append(kid)
                programs.append(leaf.compile_leaf(kid, run, pool, parent_slots)
                                if leaf.eligible(kid, run) else None)
                compiled += programs[-1] is not None
                if compiled < leaf.SPAWN_CHUNK or pos + 1 == len(kids):
                    continue
                kid = None             # a chunk of leaves compiled: they start while the next compiles
            parent = os.getpid()
            batch, programs, spawner = _spawned_by_a_leaf(batch, programs, pool)
            if collapse and len(batch) >= COLLAPSE_MIN:
                collapse_heap(region)
                collapse = False
            finished = pool.finish(programs)
            if spawner is not None:
                spawner.place(finished[programs.index(spawner.first)][0], region)
            # held by this frame, which a child never leaves: a child freeing the list would write
            # to every pid object in it (a page copied for each, ~90 in a task with 127 siblings)
            pids = [k.pid for k in batch]
            index = fork_many(pids, finished)
            if index is not None:              # (a leaf here only if its program fell back)
                batch[index].prepared = True       # signals blocked, death signal set: in C
                _run_node(batch[index], run, parent)
            pool.forked()
            batch, programs, compiled = [], [], 0
            if kid is not None:
                fork_node(kid, run)
    finally:
        pool.drop()


def _spawned_by_a_leaf(batch, programs, pool):
    """(batch, programs, Spawner or None): with enough compiled leaves, the first of them forks
    the others (crpy.restore.leaf.Spawner), which leave the batch this process forks."""
    from crpy.restore import leaf

    compiled = [i for i, p in enumerate(programs) if p is not None]
    if len(compiled) < leaf.SPAWN_MIN:
        return batch, programs, None
    spawned = set(compiled[1:])
    spawner = leaf.Spawner(pool, programs[compiled[0]], [(batch[i].pid, programs[i]) for i in compiled[1:]],
                           os.getpid())
    keep = [i for i in range(len(batch)) if i not in spawned]
    return [batch[i] for i in keep], [programs[i] for i in keep], spawner


HUGE = 2 << 20
MADV_COLLAPSE = 25             # Linux 6.1


def collapse_heap(region=None):
    """Back crpy's own heap (the brk heap and its anonymous private writable mappings) with huge
    pages, where a whole aligned 2 MiB fits, before it forks many children: fork copies one
    page-table entry per 2 MiB there instead of 512 (a quarter of the root's CPU in a tree of
    128 tasks), and a child that writes to one copies only the 4 KiB page (the kernel splits the
    huge mapping).  `region` (this task's premapped memory: the restored task's own) is left as
    it is.  Best effort: a kernel without MADV_COLLAPSE, or no huge page free, changes nothing."""
    from crpy.kernel._sys import lib
    from crpy.kernel.syscalls import NR

    try:
        with open("/proc/self/maps", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        parts = line.split(None, 5)
        if parts[1] != b"rw-p" or (len(parts) > 5 and parts[5].strip() != b"[heap]"):
            continue
        start, end = (int(x, 16) for x in parts[0].split(b"-"))
        start, end = (start + HUGE - 1) & ~(HUGE - 1), end & ~(HUGE - 1)
        if region and start < region[1] and region[0] < end:
            continue
        if end > start and lib.crpy_syscall6(NR.madvise, start, end - start, MADV_COLLAPSE, 0, 0, 0) == -1:
            log.debug("no huge pages for %#x-%#x", start, end)


def _fork_through_helper(node, run):
    """A task whose session leader (a daemon's setsid parent) or group leader (the first command
    of a pipeline) is gone: a helper with the leader's PID makes the session (and its group) or
    the group, forks the task as this process's child (CLONE_PARENT) and exits; this process
    reaps it.  A group outlives its leader, as it did before the dump.  (CRIU does the same.)"""
    from crpy.kernel.clone import CLONE_PARENT, fork_with_pid

    parent = os.getpid()
    what = f"session helper {node.helper_sid}" if node.helper_sid else f"group helper {node.helper_pgid}"
    helper = fork_with_pid(node.helper_sid or node.helper_pgid)
    if helper == 0:
        try:
            if node.helper_sid:
                os.setsid()
            else:
                os.setpgid(0, 0)
            if fork_with_pid(node.pid, CLONE_PARENT) == 0:
                _run_node(node, run, parent)
        except BaseException as e:                    # noqa: BLE001 - one line to crpy, then out
            from crpy.restore import child

            child.report_failure(run.report_fd, f"{what} of pid {node.pid}: {e}")
            os._exit(1)
        os._exit(0)
    os.waitpid(helper, 0)
    return node.pid


def _run_node(node, run, parent):
    from crpy.restore import child

    if node.zombie:
        try:
            if not node.prepared:
                child.prepare_process(parent)
            Hooks(node, run).after_session()
            _ready_and_wait(node, run)
        except CrpyError as e:
            child.report_failure(run.report_fd, e.one_line())
            os._exit(1)
        except BaseException as e:
            child.report_failure(run.report_fd, f"internal error in zombie {node.pid}: {type(e).__name__}: {e}")
            os._exit(1)
        _exit_as(node.exit_code, node.comm, run.core_dir)
    child.run_child(node.task, run.report_fd, run.keep_above, parent, Hooks(node, run))


class Hooks:
    """The tree's call points in crpy.restore.child.run_child."""

    def __init__(self, node, run):
        self.node, self.run = node, run

    def session(self):
        from crpy.restore.child import restore_session

        restore_session(self.node)

    def after_session(self):
        """A zombie: session, children (none, usually), group; no memory of its own."""
        self.session()
        self.fork_children(None)

    @property
    def prepared(self):
        """Forked by fork_many, which blocked its signals and set its parent-death signal."""
        return self.node.prepared

    def premade_plan(self):
        """The restorer region its parent planned for it (crpy.restore.child.plan_for_child)."""
        return self.node.plan

    def take_parent_pages(self, task):
        """Areas whose pages the parent holds (PE_PARENT runs) start from the parent's premapped
        copy, inherited by fork: its address in this process."""
        parent = self.run.nodes.get(self.node.ppid)
        slots = getattr(parent, "slots", None) or {}
        for area in task.areas:
            if area.cow_runs:
                src = slots.get((area.start, area.end))
                if src is None:
                    raise RestoreError(f"pid {task.pid}: pages at {area.start:#x} come from its parent "
                                       f"{self.node.ppid}, which has no such premapped VMA")
                area.cow_src = src

    def fork_children(self, plan):
        """The children with fd tables of their own, in one batch (fork_batch); those sharing
        this task's table wait for it to be filled (fork_table_sharers)."""
        if plan is not None:
            self.node.slots = {(s.area.start, s.area.end): s.addr for s in plan.slots}
        _files_before_children(self.node, self.run)
        region = (plan.start, plan.start + plan.length) if plan is not None else None
        fork_batch([k for k in self.node.children if not k.shares_files], self.run, region)
        join_group(self.node, self.run.groups)

    @property
    def shares_files(self):
        """This task was cloned into its parent's fd table, which the parent fills."""
        return self.node.shares_files

    def fork_table_sharers(self):
        """After this task's fds are in place: the children that share its fd table, cloned into
        it with CLONE_FILES (forked earlier they would race with the fd restore).  The table's
        first task makes the pipe on which they say they are done with crpy's fds in it."""
        from crpy.restore.tree import files_leader

        kids = [k for k in self.node.children if k.shares_files]
        if not kids:
            return
        leader = files_leader(self.node, self.run.nodes)
        if leader.files_done is None:
            leader.files_done = pipe_above(self.run.keep_above)
        for kid in kids:
            fork_node(kid, self.run)

    def files_sync(self):
        """(done fd, wait fd, wait count) for the restorer (rst_args.files_*)."""
        from crpy.restore.tree import files_leader

        if self.node.shares_files:
            return files_leader(self.node, self.run.nodes).files_done[1], -1, 0
        count = self.run.sharers.get(self.node.pid, 0)
        return (-1, self.node.files_done[0], count) if count else (-1, -1, 0)

    def before_jump(self):
        _ready_and_wait(self.node, self.run)

    @property
    def lazy_socket(self):
        """--lazy-pages: the daemon's socket (crpy.restore.lazy), else None."""
        return getattr(self.run, "lazy_socket", None)

    @property
    def nr_tasks(self):
        """Tasks of the tree that run (zombies aside): each connects to the lazy-pages daemon."""
        return sum(1 for n in self.run.nodes.values() if n.task)


def _files_before_children(node, run):
    """The files' hook: objects a task shares with its children (pipes...) made here, once,
    so the children inherit them (crpy.resources.fdtable.before_children, when it exists)."""
    if not node.children or node.task is None:
        return
    from crpy.resources import fdtable

    hook = getattr(fdtable, "before_children", None)
    if hook:
        hook(node.task.images_dir, node.pid, [k.pid for k in node.children], run.keep_above)


def pipe_above(keep_above):
    """A pipe with both ends at keep_above or higher: among crpy's fds, which the restorer closes."""
    import fcntl

    ends = []
    for fd in os.pipe2(os.O_CLOEXEC):
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, keep_above))
        os.close(fd)
    return tuple(ends)


def join_group(node, groups):
    """setpgid into the saved group when fork did not give it (its leader is not an ancestor);
    `groups`: the groups this restore makes (waited for a moment: their maker may come later)."""
    if os.getpgid(0) == node.pgid:
        return
    deadline = time.monotonic() + (GROUP_WAIT_S if node.pgid in groups else 0)
    while True:
        try:
            os.setpgid(0, node.pgid)
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                if node.pgid in groups:
                    raise RestoreError(f"pid {node.pid} cannot join process group {node.pgid}: "
                                       f"{os.strerror(e.errno)}") from None
                log.warning("pid %d was in process group %d, outside the tree; it stays in %d",
                            node.pid, node.pgid, os.getpgid(0))
                return
            time.sleep(0.001)


def _ready_and_wait(node, run):
    # From here crpy's death is seen as EOF on the go pipe, not as the parent-death SIGKILL: that
    # one could still hit a task (the root, whose parent is crpy) that had not yet read a go
    # crpy gave just before it died, leaving the tree without its root.
    _stop_dying_with_parent()
    os.write(run.report_fd, f"ok {node.pid}\n".encode())
    if os.read(run.go_fd, 1) != b"g":          # EOF: crpy is gone, so is the restore
        os._exit(1)


def _stop_dying_with_parent():
    libc().prctl(1, 0, 0, 0, 0)      # PR_SET_PDEATHSIG, none (the restorer sets the task's)


def _exit_as(status, comm, core_dir):
    """End this process, named `comm`, so that its parent's wait() sees `status`: exit code,
    or death by the signal, with the core flag (0x80) when it dumped core (which takes a real
    core dump: a small one, none of this process's memory, written into core_dir)."""
    import ctypes
    import resource

    libc().prctl(15, ctypes.c_char_p(comm.encode()[:15]), 0, 0, 0)   # PR_SET_NAME
    core = os.WIFSIGNALED(status) and os.WCOREDUMP(status)
    _, core_hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (core_hard if core else 0, core_hard))
    if core:
        with open("/proc/self/coredump_filter", "w") as f:
            f.write("0")                      # no memory in the core, only the headers and notes
        os.chdir(core_dir)
        libc().prctl(4, 1, 0, 0, 0)                             # PR_SET_DUMPABLE
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:             # SIGKILL's action cannot be set, nor needs to be
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.kill(os.getpid(), sig)
        time.sleep(1)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
