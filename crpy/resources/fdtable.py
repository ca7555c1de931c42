"""The fd table of a task: which fd numbers point at which files, in both directions.

Dump: walk /proc/PID/fd and fdinfo while the task is stopped and before the parasite is in (its
own socket must not be seen, and an unsupported fd must stop the dump before the task is
touched), give each open file description a files.img id and each fd an fdinfo entry.  Fds that
share one description (dup, `>log 2>&1`) are found with kcmp(KCMP_FILE) and share the id, so
they share the offset again after a restore.

Restore (restore_fds): runs in the restored child, in Python, before the restorer blob: each
kind's module makes an fd for its files.img entry (RestoreContext: objects made once, helper fds),
the fd is moved to its number with its close-on-exec bit, every other fd below keep_above is
closed, and last the file locks are taken again.  In a tree, what several tasks share was made
by the root before its first fork (before_children, crpy.resources.shared) and is inherited.
"""

import os

from crpy import resources
from crpy.errors import RestoreError, UnsupportedResource
from crpy.kernel import proc
from crpy.record import dataclass

FD_CLOEXEC = 1
O_CLOEXEC = 0o2000000
KCMP_FILE = 0
KCMP_FILES = 2


@dataclass
class FdFacts:
    fd: int
    kind: str
    target: str
    st: os.stat_result
    info: proc.FdInfo
    same_as: int | None = None      # a lower fd on the same open file description
    held_by: tuple | None = None       # (pid, fd) of an earlier task of the dump on the same one
    pid: int = 0                       # the task holding it (modules reopen it through /proc)
    locks: tuple = ()                  # (flag, type, start, len) of the locks held through it
    owner: object = None               # crpy.resources.fown.Owner (F_SETOWN, F_SETSIG), None: none


def open_above(path, keep_above):
    """path opened read-only, close-on-exec, at an fd number >= keep_above (among crpy's fds,
    which the restorer closes): the restore's exe file and the aio step's /dev/zero."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, keep_above)
    finally:
        os.close(fd)

def _kcmp(pid1, pid2, kind, idx1=0, idx2=0):
    """-1, 0, 1: kcmp's order of two kernel objects (0: the same one).  Without kcmp (an error)
    every object is its own (ordered by the arguments, so sorting stays consistent).  The
    compiled call itself, not sys_call: a dump makes a dozen per task, each 1.5 us this way
    and twice that through sys_call's conversions."""
    from crpy.kernel._sys import lib
    from crpy.kernel.syscalls import NR

    r = lib.crpy_syscall6(NR.kcmp, pid1, pid2, kind, idx1, idx2, 0)
    return _KCMP_ORDER.get(r, -1 if (pid1, idx1) < (pid2, idx2) else 1)


_KCMP_ORDER = {0: 0, 1: -1, 2: 1}


def _same_file(pid, fd1, fd2, pid2=None):
    return _kcmp(pid, pid if pid2 is None else pid2, KCMP_FILE, fd1, fd2) == 0


def _kcmp_order(pid, fd1, fd2):
    """Order of two open file descriptions of task pid (0: the same one)."""
    return _kcmp(pid, pid, KCMP_FILE, fd1, fd2)


def _find_shared(pid, facts):
    """Mark fds whose open file description a lower fd already holds: the fds on one inode are
    sorted by description (kcmp orders them: n log n calls, not n*n for 1000 opens of a file)."""
    import functools

    groups = {}
    for f in facts:
        groups.setdefault((f.st.st_dev, f.st.st_ino), []).append(f)
    for group in groups.values():
        if len(group) < 2 or _all_one_description(pid, group):
            continue
        order = sorted(group, key=functools.cmp_to_key(lambda a, b: _kcmp_order(pid, a.fd, b.fd)))
        runs, run = [], [order[0]]
        for prev, cur in zip(order, order[1:]):
            if _kcmp_order(pid, prev.fd, cur.fd) == 0:
                run.append(cur)
            else:
                runs.append(run)
                run = [cur]
        runs.append(run)
        for run in runs:
            low = min(f.fd for f in run)
            for f in run:
                if f.fd != low:
                    f.same_as = low


def _all_one_description(pid, group):
    """Whether every fd of group (ascending) is on its lowest fd's open file description, and
    if so marked same_as it: n - 1 kcmp calls for the common case (0, 1 and 2 on one terminal
    or /dev/null) instead of the sort's; False at the first that is not (the sort then)."""
    low = group[0].fd
    if any(_kcmp_order(pid, low, f.fd) != 0 for f in group[1:]):
        return False
    for f in group[1:]:
        f.same_as = low
    return True


def _find_held_elsewhere(pid, facts):
    """Mark each fd that holds a description of its own in this task with held_by: an earlier
    task's fd on the same description (inherited across fork), found among the distinct
    descriptions of its inode seen so far in the dump (resources.fd_descriptions); else its
    description is a new one there.  Done here, at collect time, it spares the owner reads of
    those fds (an owner belongs to the description, read where it was first met) and dump_fds
    its own kcmp search."""
    seen_by_inode = resources.fd_descriptions
    for f in facts:
        if f.same_as is not None:
            continue
        seen = seen_by_inode.setdefault((f.st.st_dev, f.st.st_ino), [])
        for other, other_fd in seen:
            if other != pid and _same_file(other, other_fd, f.fd, pid):
                f.held_by = (other, other_fd)
                break
        else:
            seen.append((pid, f.fd))


def collect_fds(pid):
    """Facts of every open fd; UnsupportedResource for the first fd of a kind crpy cannot dump.
    A task sharing the fd table of a task collected before it (CLONE_FILES) has none of its own:
    [] (table_owner(pid) names that task)."""
    from crpy.resources import ctty

    if _find_table_owner(pid) is not None:
        ctty.check_task(pid)
        return []
    out = []
    for fd in proc.fds(pid):
        target = proc.fd_target(pid, fd)
        st = proc.fd_stat(pid, fd)
        kind = resources.classify(target, st)
        if kind == "tty" and not _on_shell_terminal(pid, st) or kind == "unlinked file" and _is_pty(st):
            kind = _terminal_kind(pid, fd, target, st)
        if kind == "socket":
            kind = _socket_kind(pid, fd, st)
        if not resources.supported(kind):
            raise UnsupportedResource(pid, kind, fd, target,
                                      "crpy cannot dump this kind of file yet; close it before the dump")
        out.append(FdFacts(fd, kind, target, st, proc.fdinfo(pid, fd), pid=pid))
        resources.check_fd(out[-1])
        if "lock" in out[-1].info.raw:
            out[-1].locks = _held_locks(pid, fd, target)
    _find_shared(pid, out)
    _find_held_elsewhere(pid, out)
    _note_owners(pid, [f for f in out if f.same_as is None and f.held_by is None])
    ctty.check_task(pid)
    return out


def _note_owners(pid, facts):
    """Each fd's file owner (F_SETOWN/F_SETSIG), refused where the restore could not set it;
    facts: the fds on descriptions first met in this task (the others' owner is theirs)."""
    from crpy.resources import fown

    if not facts:
        return                 # a forked child's inherited fds only: no pidfd to open
    owners = fown.dump_owners(pid, [f.fd for f in facts], resources.tree_pids)
    for f in facts:
        f.owner = owners.get(f.fd)
        if f.owner is not None and f.kind == "fifo":
            raise UnsupportedResource(pid, "file owner (F_SETOWN) on a FIFO", f.fd, f.target,
                                      "clear the owner (F_SETOWN 0) before the dump")


def _table_order(pid, other):
    """Order of two tasks' fd tables (0: one table, CLONE_FILES)."""
    return _kcmp(pid, other, KCMP_FILES)


def _find_table_owner(pid):
    """The first task of this dump whose fd table `pid` shares (clone with CLONE_FILES), or None.
    The tables seen are kept in kcmp's order, so each task costs log n kcmp calls, not n."""
    seen = resources.fd_tables_seen
    lo, hi = 0, len(seen)
    while lo < hi:
        mid = (lo + hi) // 2
        order = _table_order(pid, seen[mid])
        if order == 0:
            resources.fd_table_owners[pid] = seen[mid]
            return seen[mid]
        lo, hi = (lo, mid) if order < 0 else (mid + 1, hi)
    seen.insert(lo, pid)
    return None


def refuse_table_shared_outside(pid, parent):
    """The root of a dumped tree cloned with CLONE_FILES shares its fd table with its parent,
    which stays: killing the root and restoring it with a table of its own would change both."""
    if parent > 0 and _table_order(pid, parent) == 0:
        raise UnsupportedResource(pid, f"fd table shared with pid {parent}, outside the dumped tree (CLONE_FILES)",
                                  hint="dump the tree from the task that shares its fd table")


def table_owner(pid):
    """The task whose fd table `pid` shares (found by collect_fds), or None: its own."""
    return resources.fd_table_owners.get(pid)


def _is_pty(st):
    from crpy.resources import pty

    return pty.is_pty(st)


def _terminal_kind(pid, fd, target, st):
    """'pty' or 'ctty' (/dev/tty) for a terminal fd the restore can make again; else refused."""
    from crpy.resources import ctty, pty

    if ctty.is_dev_tty(st):
        ctty.check_dev_tty(pid, fd, target)
        return "ctty"
    if pty.is_pty(st):
        pty.check_fd(pid, fd, target, st)
        return "pty"
    raise UnsupportedResource(pid, "tty", fd, target,
                              "dump a task on the terminal it was started from with --shell-job")


def _socket_kind(pid, fd, st):
    """'unixsk' for a unix socket, 'inetsk' for a TCP one, that the restore can make again (else
    refused), or '<PROTO> socket'."""
    from crpy.resources import unix_socket

    kind = unix_socket.socket_kind(pid, fd)
    if kind == "unixsk":
        unix_socket.check_fd(pid, fd, st)
    elif kind in ("TCP socket", "TCPv6 socket"):
        from crpy.resources import inet_tcp

        inet_tcp.check_fd(pid, fd, st)
        return "inetsk"
    from crpy.resources.inet_socket import DATAGRAM_PROTOS

    if kind.removesuffix(" socket") in DATAGRAM_PROTOS:
        return "inetsk"
    return _SOCKET_KINDS.get(kind, kind)


# the kernel's protocol name ('<NAME> socket') -> kind, for the sockets of other families
_SOCKET_KINDS = {"NETLINK socket": "netlinksk", "PACKET socket": "packetsk"}


def _on_shell_terminal(pid, st):
    from crpy.resources import tty

    return resources.allowed("shell_job") and tty.is_shell_terminal(pid, st)


def _held_locks(pid, fd, target):
    """Locks held through fd; without --file-locks a held lock stops the dump (as with criu)."""
    from crpy.resources import locks

    held = locks.fd_locks(pid, fd)
    if held and not resources.allowed("file_locks"):
        raise UnsupportedResource(pid, "held file lock on", fd, target,
                                  "dump with --file-locks to save and take the lock again at restore")
    if any(flag == 0 for flag, *_ in held):
        raise UnsupportedResource(pid, "lease being broken, or delegation, on", fd, target,
                                  "crpy dumps flock/POSIX/OFD locks and leases that are not being broken")
    return tuple(held)


def dump_fds(fdfacts, files):
    """fdinfo entries for the fds; their files go into `files` (crpy.dump.files.FileTable)."""
    from crpy.images.pb import fdinfo_pb2

    entries, ids = [], {}
    for f in fdfacts:
        if f.same_as is not None:
            file_id = ids[f.same_as]
        elif f.held_by is not None:             # inherited across fork: one description, one id
            file_id = _file_id_of(f.held_by, f.st, files)
        else:
            file_id = files.add(lambda fid, f=f: _file_entry(f, fid, files))
            if f.locks:
                _dump_locks(f, files)
        ids[f.fd] = file_id
        files.descriptions.setdefault((f.st.st_dev, f.st.st_ino), []).append((f.pid, f.fd, file_id))
        entries.append(fdinfo_pb2.fdinfo_entry(
            id=file_id, flags=FD_CLOEXEC if f.info.flags & O_CLOEXEC else 0,
            type=fdinfo_pb2.fd_types.Value(resources.fd_type(f.kind)), fd=f.fd))
    return entries


def _file_entry(f, file_id, files):
    from crpy.resources import fown

    return fown.fill(resources.module(f.kind).dump_fd(f, file_id, files), f.owner)


def _file_id_of(held_by, st, files):
    """files.img id of fd (pid, fd) = held_by of an earlier task, on the inode of st (its
    dump_fds ran before this one's: tasks are dumped in the order they were collected)."""
    for pid, fd, file_id in files.descriptions[(st.st_dev, st.st_ino)]:
        if (pid, fd) == held_by:
            return file_id
    raise AssertionError(f"fd {held_by[1]} of pid {held_by[0]} was not dumped before its sharers")


def _dump_locks(f, files):
    from crpy.resources import locks

    for entry in locks.lock_entries(f.pid, f.fd, f.locks):
        files.plain("file_locks", entry)


# ---------------------------------------------------------------- restore side

def read_fd_images(images_dir, pid):
    """(fdinfo entries of task pid, files.img entries by id)."""
    return read_fdinfo(images_dir, pid), read_files(images_dir)


def read_fdinfo(images_dir, pid):
    """The fdinfo entries of task pid's fd table (ids-PID.img says which table), read-only."""
    from crpy.images import framing

    ids = _parsed(framing.image_path(images_dir, "ids", pid), "ids")[1][0]
    return _parsed(framing.image_path(images_dir, "fdinfo", ids.files_id), "fdinfo")[1]


def read_files(images_dir):
    """files.img entries by id, read-only."""
    return _parse_files(images_dir)[1]


def _by_id(entries):
    """files.img's entries by id, and whether one is a tty."""
    import types

    by_id = {e.id: e for e in entries}
    return types.MappingProxyType(by_id), any(e.HasField("tty") for e in entries)


# image path -> (its bytes, its entries or what derive made of them), the last parse of each
# image: crpy parses the tree's fd images before it forks (crpy.restore.tree_preload) and every
# task inherits the entries, instead of parsing them again (the files.img of the whole tree, 640
# entries for 128 tasks, for its own few fds).  A task neither copies nor walks them: that would
# write to their memory, and so copy it into each task of the tree.  An image is parsed again
# when its bytes differ from the last parse.
_images_parsed = {}


def _parsed(path, kind, derive=tuple):
    from crpy.images import framing

    try:
        with open(path, "rb", buffering=0) as f:
            data = f.read()
    except OSError:
        data = None                     # read_image names the problem
    last = _images_parsed.get(path)
    if data is None or last is None or last[0] != data:
        last = (data, derive(framing.read_image(path, kind)))
        if data is not None:
            _images_parsed[path] = last
    return last


def _parse_files(images_dir):
    """(files.img's bytes, entries by id, whether one is a tty)."""
    from crpy.images import framing

    data, (files, has_tty) = _parsed(framing.image_path(images_dir, "files"), "files", _by_id)
    return data, files, has_tty


def kind_of_entry(entry):
    from crpy.images.pb import fdinfo_pb2

    return "reg" if entry.type == fdinfo_pb2.REG else fdinfo_pb2.fd_types.Name(entry.type).lower()


class RestoreContext:
    """What the kind modules share while one task's fds are restored: the images, the files.img
    entries, objects made once (a pipe for both its ends, a ghost file) and helper fds held above
    every wanted fd number until all fds are placed (then finish() closes them)."""

    def __init__(self, images_dir, files, hold_from):
        self.images_dir, self.files, self.hold_from = images_dir, files, hold_from
        self.cache, self._held, self._cleanups = {}, [], []

    def hold(self, fd):
        """Move fd above the wanted numbers (no fd placement can clobber it); returns the new fd."""
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, self.hold_from)
        os.close(fd)
        self._held.append(high)
        return high

    def take(self, fd):
        """A held fd becomes the caller's (it closes or places it; finish() no longer does)."""
        self._held.remove(fd)
        return fd

    def at_finish(self, fn):
        self._cleanups.append(fn)

    def run_cleanups(self):
        for fn in self._cleanups:
            fn()
        self._cleanups = []

    def finish(self):
        for fd in self._held:
            os.close(fd)
        self._held = []
        self.run_cleanups()


def inherited():
    from crpy.resources import shared

    return shared.inherited()


def before_children(images_dir, pid, child_pids, keep_above):
    """Called by the tree restore in each task before it forks its children: the root opens
    everything several tasks share, so they all inherit one object (crpy.resources.shared)."""
    from crpy.resources import shared

    shared.make_shared(images_dir, keep_above)
    if shared.inherited() is not None:
        from crpy.resources import ctty

        ctty.before_children(shared.inherited().ctx)


def restore_fds(images_dir, pid, keep_above):
    """Leave exactly the dumped fds of task `pid` open at their numbers, plus whatever sits at
    keep_above and above (the caller's own fds)."""
    fdinfos = read_fdinfo(images_dir, pid)
    _, files, has_tty = _parse_files(images_dir)
    wanted = {}
    for e in fdinfos:
        if e.fd >= keep_above:
            raise RestoreError(f"fd {e.fd} of pid {pid} collides with crpy's own fds (>= {keep_above})",
                               "restore with fewer fds open in crpy")
        if e.id not in files:
            raise RestoreError(f"fd {e.fd} of pid {pid} refers to file id {e.id}, absent from files.img")
        wanted[e.fd] = e
    placed = {}                                   # file id -> fd number already holding it
    ctx = RestoreContext(images_dir, files, max(wanted, default=0) + 1)
    if has_tty:
        from crpy.resources import tty

        ctx.cache["terminal"] = tty.restore_terminal_path()   # before fds 0-2 are replaced
    shared = inherited()
    if shared is not None:                        # made by the root for several tasks; ours now
        ctx.cache.update(shared.ctx.cache)
        ctx.hold_from = max(ctx.hold_from, shared.ctx.hold_from)
    try:
        _place_all(wanted, files, placed, ctx, pid)
    finally:
        ctx.finish()
    resources.after_placed({kind_of_entry(files[e.id]) for e in wanted.values()},
                           {fd: files[e.id] for fd, e in wanted.items()})
    _close_others(set(wanted), keep_above)
    from crpy.resources import locks       # last: closing any fd of a file drops its POSIX locks

    locks.restore_locks(images_dir, pid)
    if "terminal" in ctx.cache:
        from crpy.resources import tty

        tty.take_foreground(ctx)
    if has_tty:
        from crpy.resources import ctty

        ctty.after_fds(ctx)


def _place_all(wanted, files, placed, ctx, pid):
    from crpy.resources import fown

    for fd in sorted(wanted):
        e = wanted[fd]
        if e.id in placed:                        # same file entry: share the open description
            _move(placed[e.id], fd, e, close=False)
            continue
        shared = inherited()
        entry = files[e.id]
        if shared is not None and e.id in shared.fds:
            _move(shared.fds[e.id], fd, e, close=False)
        else:
            kind = kind_of_entry(entry)
            if not resources.supported(kind):
                raise RestoreError(f"fd {fd} of pid {pid}: cannot restore a {kind} yet")
            _move(resources.module(kind).restore_fd(entry, ctx), fd, e, close=True)
        placed[e.id] = fd
        fown.restore(fd, entry)          # at its number: a tty's O_ASYNC takes the current owner


def _move(tmp, fd, e, close):
    """Put open file `tmp` at number `fd` with fdinfo entry e's close-on-exec flag; one
    temporary fd at a time, never many."""
    try:
        if tmp != fd:
            os.dup2(tmp, fd, inheritable=not e.flags & FD_CLOEXEC)
        else:
            os.set_inheritable(fd, not e.flags & FD_CLOEXEC)
    except OSError as err:
        raise RestoreError(f"cannot place fd {fd}: {err.strerror}") from None
    finally:
        if close and tmp != fd:
            os.close(tmp)


NR_CLOSE_RANGE = 436           # Linux 5.9


def fd_gaps(keep, keep_above):
    """[(first, last)] fd ranges below keep_above that hold none of `keep`: what close_range
    closes to leave only those."""
    gaps, lo = [], 0
    for fd in sorted(keep) + [keep_above]:
        if fd > lo:
            gaps.append((lo, fd - 1))
        lo = fd + 1
    return gaps


def _close_others(keep, keep_above):
    """Close every fd below keep_above but those in keep: close_range over the gaps between them
    (a few syscalls, no /proc/self/fd to list, in each task of a tree); listed one by one on a
    kernel without close_range."""
    from crpy.kernel._sys import lib

    for lo, hi in fd_gaps(keep, keep_above):
        if lib.crpy_syscall6(NR_CLOSE_RANGE, lo, hi, 0, 0, 0, 0) == -1:
            break
    else:
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < keep_above and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass                               # the listdir fd itself, already gone

