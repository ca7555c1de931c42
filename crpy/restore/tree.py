"""Restore of a process tree, crpy's side: read pstree.img into nodes (parents before children),
check every saved PID is free before anything is forked, and hold the barrier: every task
reports "ok PID" when it stands at its restorer; only when all of them did, crpy lets them go
(one byte each on the go pipe), and then wants "run PID" from each restorer (zombies aside)
before every report fd is closed.  Any failure anywhere kills every task of the tree and
becomes one RestoreError.  The tasks' side is crpy.restore.fork."""

import os
import select
import signal
import time

from crpy import faults, progress
from crpy.errors import RestoreError
from crpy.log import log
from crpy.record import dataclass, field

TASK_DEAD = 2
STALL_S = 30.0            # no task reported for this long: the restore is stuck


@dataclass
class Node:
    pid: int
    ppid: int
    pgid: int
    sid: int
    task: object = None              # load.TaskImage; None for a zombie
    zombie: bool = False
    exit_code: int = 0               # wait status a zombie leaves for its parent
    comm: str = ""                   # a zombie's name
    children: list = field(default_factory=list)
    slots: dict = None               # (start, end) -> premap address, set before it forks
    plan: object = None              # layout.RegionPlan its parent made for it, from the parent's maps
    helper_sid: int = 0              # its session leader is gone: a helper with this pid makes it
    helper_pgid: int = 0             # its group leader is gone: a helper with this pid makes the group
    files_id: int = 0                # ids.files_id; equal to its parent's: one fd table (CLONE_FILES)
    shares_files: bool = False       # forked with CLONE_FILES into its parent's fd table
    files_done: tuple = None         # (read, write) fds: its table's sharers say "done with crpy's fds"
    prepared: bool = False           # forked by fork_many: signals blocked, death signal set in C


def load_tree(images_dir):
    """Nodes of the tree in pstree order (the root first); every image read and checked."""
    from crpy.restore import creds, load

    creds.own.cache_clear()              # crpy's creds, read again once for this restore
    items = load.read_pstree(images_dir)
    files = load.files_by_id(images_dir)
    nodes, by_pid = [], {}
    for item in items:
        node = Node(item.pid, item.ppid, item.pgid, item.sid)
        core = load.read_core(images_dir, item.pid)
        if core.HasField("tc") and core.tc.task_state == TASK_DEAD:
            node.zombie, node.exit_code, node.comm = True, core.tc.exit_code, core.tc.comm
        else:
            node.task = load.load_one_task(images_dir, item, core, files)
            node.files_id = load.read_ids(images_dir, item.pid).files_id
        _link(node, nodes, by_pid, images_dir)
        node.shares_files = bool(nodes[1:]) and node.files_id == by_pid[node.ppid].files_id != 0
    _plan_session_helpers(nodes, by_pid)
    _plan_group_helpers(nodes, by_pid)
    return nodes


def files_leader(node, nodes):
    """The first task of the fd table `node` lives in (itself, unless it shares its parent's)."""
    while node.shares_files:
        node = nodes[node.ppid]
    return node


def files_sharers(nodes):
    """{pid of a table's first task: how many tasks were forked into its fd table (CLONE_FILES),
    at any depth}, counted once before the fork (a task walking every node of the tree would
    copy the memory of all of them)."""
    counts = {}
    for n in nodes.values():
        if n.shares_files:
            pid = files_leader(n, nodes).pid
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def _plan_session_helpers(nodes, by_pid):
    """A task in a session its parent is not in, whose leader is not in the tree, and which
    leads no group of its own: it needs a helper with the leader's PID (crpy.restore.fork)."""
    helpers = set()
    for node in nodes[1:]:
        parent = by_pid[node.ppid]
        if node.sid == parent.sid or node.sid == node.pid or node.sid in by_pid:
            continue
        if node.sid in helpers or node.pgid not in (node.sid, node.pid) and node.pgid not in by_pid:
            continue                  # one helper per session; its group, another group in it: not made
        node.helper_sid = node.sid
        helpers.add(node.sid)
        log.info("pid %d: session %d has no leader in the tree; a helper task makes it", node.pid, node.sid)


def _plan_group_helpers(nodes, by_pid):
    """A task in a process group whose leader is gone (a pipeline whose first command exited),
    in its parent's session: the first such task of the group is forked through a helper with
    the leader's PID, which makes the group; the others join it (crpy.restore.fork)."""
    helpers = set()
    for node in nodes[1:]:
        if node.helper_sid or node.pgid == node.pid or node.pgid in by_pid or node.pgid in helpers:
            continue
        if node.sid != by_pid[node.ppid].sid:
            continue                  # a group in a session of its own whose leader is gone: not made
        node.helper_pgid = node.pgid
        helpers.add(node.pgid)
        log.info("pid %d: process group %d has no leader in the tree; a helper task makes it",
                 node.pid, node.pgid)


def helper_pids(nodes):
    """PIDs the helper tasks take (dead session and group leaders)."""
    return [n.helper_sid or n.helper_pgid for n in nodes if n.helper_sid or n.helper_pgid]


def _link(node, nodes, by_pid, images_dir):
    from crpy.images.framing import entry_error

    path = os.path.join(images_dir, "pstree.img")
    if node.pid in by_pid:            # entry len(nodes) of pstree.img is this node's
        raise entry_error(path, f"pid {node.pid} appears twice", len(nodes))
    if nodes and node.ppid not in by_pid:
        raise entry_error(path, f"pid {node.pid}: parent {node.ppid} is not listed before it", len(nodes))
    if not nodes and node.zombie:
        raise RestoreError(f"pid {node.pid}, the root of the tree, is a zombie: nothing to restore")
    if nodes:
        by_pid[node.ppid].children.append(node)
    by_pid[node.pid] = node
    nodes.append(node)


ZOMBIE_WAIT = 5.0        # a just-dumped tree may stay zombies until its parent (init) reaps them


def check_pids_free(pids):
    """RestoreError naming the first pid in use; the dumped tasks' zombies are waited for."""
    deadline = time.monotonic() + ZOMBIE_WAIT
    for pid in pids:
        while _pid_state(pid) == "Z" and time.monotonic() < deadline:
            time.sleep(0.02)
        state = _pid_state(pid)
        if state is not None:
            what = "a zombie nobody reaps" if state == "Z" else "another task"
            raise RestoreError(f"pid {pid} is taken by {what}", f"stop the task holding pid {pid} and retry")


def _pid_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


class Barrier:
    """crpy's end of the two pipes every task shares: reports (tasks write) and go (crpy)."""

    def __init__(self, report_fd, go_fd, root, pids, running=None):
        """running: the pids whose restorer says "run PID" after the go (zombies do not)."""
        self.report_fd, self.go_fd, self.root, self.pids = report_fd, go_fd, root, pids
        self.running = set(pids if running is None else running)
        self.buf = b""

    def run(self, before_go=None):
        """Wait for every task at its restorer, call before_go(), let them go, wait for every
        report to close.  Returns when the whole tree runs; RestoreError (tree killed) otherwise."""
        try:
            self._await_ready()
            if before_go is not None:
                before_go()
            os.write(self.go_fd, b"g" * len(self.pids))
            faults.point("restore-after-go")
            self._await_eof()
        except BaseException:
            self.kill_all()
            raise
        finally:
            os.close(self.go_fd)
            os.close(self.report_fd)

    def _await_ready(self):
        ready = set()
        while len(ready) < len(self.pids):
            for line in self._lines("before every task was ready"):
                if line.startswith("ok "):
                    ready.add(int(line[3:]))
                    progress.task_done()
                else:
                    self._fail(line)
        log.info("all %d tasks stand at their restorer", len(ready))

    def _await_eof(self):
        """Every task's "run PID", then EOF: a task killed in its restorer says nothing, and its
        report fd closes all the same."""
        missing = set(self.running)
        while True:
            lines = self._lines(None)
            if lines is None:
                break
            for line in lines:
                pid = line[4:]
                if line.startswith("run ") and pid.isdigit() and int(pid) in missing:
                    missing.discard(int(pid))
                else:
                    self._fail(line)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise RestoreError(f"pid {min(missing)}{more} died in its restorer after the go without a word, "
                               "killed by a signal; the tree is killed (hint: the kernel log may name the fault)")

    def _lines(self, eof_means):
        """The next complete lines; None at EOF (a failure if eof_means says when)."""
        last = time.monotonic()
        while True:
            r, _, _ = select.select([self.report_fd], [], [], 0.5)
            if not r:
                if eof_means:          # after the go a root that ends is its own business
                    self._check_root()
                if time.monotonic() - last > STALL_S:
                    raise RestoreError(f"the restore of the tree under {self.root} stalled")
                continue
            data = os.read(self.report_fd, 65536)
            if not data:
                if eof_means:
                    self._check_root()
                    raise RestoreError(f"the restored tasks all ended {eof_means}")
                return None
            self.buf += data
            if b"\n" in self.buf:
                *done, self.buf = self.buf.split(b"\n")
                return [x.decode(errors="replace") for x in done if x]

    def _check_root(self):
        wpid, status = os.waitpid(self.root, os.WNOHANG)
        if wpid:
            self.root_status = status
            raise RestoreError(f"pid {self.root}, the root of the tree, died during the restore "
                               f"(wait status {status:#x})")

    def _fail(self, line):
        from crpy.restore.parent import reason

        raise RestoreError(reason(line, None))

    def kill_all(self):
        """SIGKILL every task and return once none of them runs: the root is reaped; the others,
        not crpy's children, are waited for until gone or zombies (a killed task still tears
        down its memory for a while, and a caller checking "nothing left" right after crpy
        exits must not see it)."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(self.root, 0)
        except ChildProcessError:
            pass
        _wait_dead(set(self.pids) - {self.root}, timeout=10)


def _wait_dead(pids, timeout):
    import time

    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if _running(pid)}
        if left:
            time.sleep(0.001)


def _running(pid):
    """pid exists and is neither a zombie nor dead."""
    from crpy.errors import NoSuchProcess
    from crpy.kernel import proc

    try:
        return proc.stat(pid).state not in ("Z", "X")
    except NoSuchProcess:
        return False
