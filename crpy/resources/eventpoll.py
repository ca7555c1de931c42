"""epoll sets: dump and restore of every registration (target, events, data), including targets
registered through an fd that was closed (or replaced) since, and epoll sets inside epoll sets.

As CRIU does, one files.img entry of type EVENTPOLL (eventpoll_file_entry) per set, its
registrations as eventpoll_tfd_entry (fd number it was added under, events, data, and the
target's pos, inode and device) from /proc/PID/fdinfo ("tfd: N events: X data: Y pos:P ino:I
sdev:D", hex).  A registration is keyed by (file, fd number): kcmp(KCMP_EPOLL_TFD) tells whether
the task's fd N still holds the registered file; if not, another fd of the task that does is
found the same way and named in crpy's field held_at (1000); failing that, a task of the tree
holding it, whose files.img id goes into crpy's field held_file (1001).  A registered file held
by no task of the tree is refused by name before the task is touched.

Restore: the sets are made empty with the other fds; once every fd of the task is at its
number (after_placed), each registration is added again with epoll_ctl(ADD) under its fd
number, a held_at file (or a held_file, which the tree's root made for all its tasks:
extra_users) being dup'ed there for the call (whatever sits at that number is put
back after).  A one-shot registration that had fired is added armed for any event and let
report once, as it did before the dump (epoll_ctl would arm EPOLLERR and EPOLLHUP on it): the
dump refuses one whose file has no event ready.  A set shared by several tasks (inherited
across fork) is filled by the task that dumped it (crpy's field owner, 1000): the fd numbers
are of its table.  The readiness is the kernel's to find again; an edge-triggered event
already reported before the dump may be reported once more.
"""

import os
import re

from crpy.errors import CrpyError, RestoreError, UnsupportedResource

O_CLOEXEC = 0o2000000
KCMP_EPOLL_TFD = 7
_NR_EPOLL_CREATE1, _NR_EPOLL_CTL = 291, 233
EPOLL_CTL_ADD = 1
EPOLLONESHOT = 1 << 30
EP_PRIVATE_BITS = (1 << 28) | (1 << 29) | EPOLLONESHOT | (1 << 31)   # EXCLUSIVE WAKEUP ONESHOT ET
_ANY_EVENT = 0x1 | 0x2 | 0x4 | 0x2000               # EPOLLIN PRI OUT RDHUP (ERR, HUP: always)
_TFD = re.compile(r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)\s+pos:\s*(\d+)\s+"
                  r"ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)")


def parse_fdinfo(text):
    """[(tfd, events, data, pos, ino, sdev)] of the registrations an epoll fdinfo lists."""
    return [(int(m[1]), int(m[2], 16), int(m[3], 16), int(m[4]), int(m[5], 16), int(m[6], 16))
            for m in _TFD.finditer(text)]


def _holds(pid, fd, epfd, tfd, toff, holder=None):
    """Whether fd of task `holder` (pid itself unless told) is the file epoll set epfd of task
    pid registered as the toff-th under tfd."""
    from crpy.errors import CrpyError
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import NR, sys_call

    slot = ffi.new("unsigned int[3]", [epfd, tfd, toff])
    try:
        return sys_call(NR.kcmp, holder or pid, pid, KCMP_EPOLL_TFD, fd, slot, what="kcmp") == 0
    except CrpyError:
        return False


def registrations(pid, epfd):
    """[(tfd, events, data, pos, ino, sdev, (holder pid, fd))]: where the registered file is
    (fd tfd of pid itself, another fd of pid, or an fd of another task of the tree);
    UnsupportedResource for a registered file that no task of the tree holds."""
    from crpy.kernel import proc

    regs, seen, fds = [], {}, None
    for tfd, events, data, pos, ino, sdev in parse_fdinfo(proc.read_text(pid, f"fdinfo/{epfd}")):
        toff = seen.get(tfd, 0)
        seen[tfd] = toff + 1
        where = (pid, tfd)
        if not _holds(pid, tfd, epfd, tfd, toff):
            fds = proc.fds(pid) if fds is None else fds
            here = next((fd for fd in fds if fd != tfd and _holds(pid, fd, epfd, tfd, toff)), None)
            where = (pid, here) if here is not None else _held_elsewhere(pid, epfd, tfd, toff)
        if _fired(events):
            _refuse_unready(pid, epfd, *where)
        regs.append((tfd, events, data, pos, ino, sdev, where))
    return regs


def _held_elsewhere(pid, epfd, tfd, toff):
    """(task, fd) of another task of the tree holding the registered file; refused by name when
    none does."""
    from crpy import resources
    from crpy.kernel import proc

    for other in resources.tree_pids:
        if other != pid:
            try:
                fds = proc.fds(other)
            except Exception:
                continue
            found = next((fd for fd in fds if _holds(pid, fd, epfd, tfd, toff, holder=other)), None)
            if found is not None:
                return other, found
    raise UnsupportedResource(pid, "epoll registration", epfd, f"of fd {tfd}, closed since: its file is held by no "
                              "task of the dumped tree (by a process outside it, a mapping or a message in flight)",
                              "crpy restores a registered file only while a task of the tree holds it")


def _fired(events):
    """A one-shot registration that has reported its event: disarmed, only its flags are left."""
    return events & EPOLLONESHOT and not events & ~EP_PRIVATE_BITS


def _refuse_unready(pid, epfd, holder, fd):
    """Restore disarms a fired one-shot registration the way the kernel does, by letting it
    report once (epoll_ctl ADD itself always arms EPOLLERR and EPOLLHUP): its file must have
    some event ready."""
    import select

    from crpy.resources import taskfd

    with taskfd.grabbed(holder, fd) as mine:
        p = select.poll()
        p.register(mine, _ANY_EVENT)
        if p.poll(0):
            return
    raise UnsupportedResource(pid, "epoll registration", epfd, f"of fd {fd}: a one-shot that fired, on a file with no event ready",
                              "crpy can disarm a fired one-shot registration only while its file is ready")


def check(fdfacts):
    registrations(fdfacts.pid, fdfacts.fd)


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import eventpoll_pb2, fdinfo_pb2
    from crpy.resources.regfile import fown

    e = eventpoll_pb2.eventpoll_file_entry(id=file_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown(),
                                           owner=fdfacts.pid)
    for tfd, events, data, pos, ino, sdev, (holder, fd) in registrations(fdfacts.pid, fdfacts.fd):
        t = e.tfd.add(id=file_id, tfd=tfd, events=events, data=data, dev=sdev, inode=ino, pos=pos)
        if holder != fdfacts.pid:
            t.held_file = _file_id(holder, fd, files)
        elif fd != tfd:
            t.held_at = fd
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.EVENTPOLL, id=file_id, epfd=e)


def _file_id(pid, fd, files):
    """files.img id of task pid's fd (every task's fds are in `files` by now: entries are made
    after the whole tree is dumped)."""
    from crpy.errors import DumpError
    from crpy.kernel import proc
    from crpy.resources.fdtable import _same_file

    st = proc.fd_stat(pid, fd)
    for other, other_fd, file_id in files.descriptions.get((st.st_dev, st.st_ino), ()):
        if (other, other_fd) == (pid, fd) or _same_file(other, other_fd, fd, pid):
            return file_id
    raise DumpError(f"pid {pid} fd {fd}: a file an epoll set registers is not among the dumped files")


def extra_users(entry):
    """(pid, file id): the task that restores this set's registrations needs the files of
    other tasks it registers (crpy.resources.shared makes them once for the tree)."""
    if entry.HasField("epfd") and entry.epfd.HasField("owner"):
        return [(entry.epfd.owner, t.held_file) for t in entry.epfd.tfd if t.HasField("held_file")]
    return []


def restore_fd(entry, ctx):
    import fcntl

    from crpy.kernel.syscalls import sys_call

    fd = sys_call(_NR_EPOLL_CREATE1, O_CLOEXEC, what="epoll_create1")
    fcntl.fcntl(fd, fcntl.F_SETFL, entry.epfd.flags & os.O_NONBLOCK)
    return fd


def after_placed(fds):
    """Every fd of the task is at its number: add each set's registrations again, the fired
    one-shots first, each set's alone (they are disarmed by reporting once: _disarm)."""
    sets = [(epfd, entry.epfd) for epfd, entry in sorted(fds.items())
            if entry.HasField("epfd") and (not entry.epfd.HasField("owner") or entry.epfd.owner == os.getpid())]
    for epfd, e in sets:
        fired = [t for t in e.tfd if _fired(t.events)]
        for t in fired:
            _add(epfd, t, fds, t.events | _ANY_EVENT)
        if fired:
            _disarm(epfd, len(fired))
    for epfd, e in sets:
        for t in e.tfd:
            if not _fired(t.events):
                _add(epfd, t, fds, t.events)


def _disarm(epfd, n):
    """Let the n one-shot registrations of set epfd (its only ones so far) report, as they did
    before the dump: the kernel leaves them disarmed with only their flags."""
    import select

    ep = select.epoll.fromfd(os.dup(epfd))
    try:
        got = ep.poll(0, maxevents=n + 1)
    finally:
        ep.close()
    if len(got) != n:
        raise RestoreError(f"epoll fd {epfd}: {n - len(got)} fired one-shot registrations have no event ready to disarm them")


def _add(epfd, t, fds, events):
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import sys_call

    event = ffi.new("unsigned char[12]")                    # struct epoll_event, packed
    ffi.cast("unsigned int *", event)[0] = events
    ffi.cast("unsigned long long *", event + 4)[0] = t.data
    where = f"epoll fd {epfd}: registration of fd {t.tfd}"
    with _file_at(t.tfd, _source(t, where), fds):
        try:
            sys_call(_NR_EPOLL_CTL, epfd, EPOLL_CTL_ADD, t.tfd, event, what="epoll_ctl ADD")
        except CrpyError as err:
            raise RestoreError(f"{where}: {err}") from None


def _source(t, where):
    """The fd that holds the registered file when fd t.tfd does not: another fd of the task
    (held_at), or the file of another task of the tree (held_file), made once for the tree by
    crpy.resources.shared and inherited; None when fd t.tfd holds it."""
    if t.HasField("held_at"):
        return t.held_at
    if t.HasField("held_file"):
        from crpy.resources import shared

        made = shared.inherited()
        if made is None or t.held_file not in made.fds:
            raise RestoreError(f"{where}: file id {t.held_file} of another task was not made for the tree")
        return made.fds[t.held_file]
    return None


class _file_at:
    """With held_at given: the file of fd held_at sits at number fd for the block, and whatever
    was at fd (with its close-on-exec flag) is back after."""

    def __init__(self, fd, held_at, fds):
        self.fd, self.held_at, self.saved = fd, held_at, None
        self.top = max(fds, default=0) + 1

    def __enter__(self):
        import fcntl

        if self.held_at is None:
            return
        try:
            self.saved = fcntl.fcntl(self.fd, fcntl.F_DUPFD_CLOEXEC, self.top)
            self.inheritable = os.get_inheritable(self.fd)
        except OSError:
            self.saved = None                      # nothing at fd now
        os.dup2(self.held_at, self.fd)

    def __exit__(self, *exc):
        if self.held_at is None:
            return
        if self.saved is None:
            os.close(self.fd)
        else:
            os.dup2(self.saved, self.fd, inheritable=self.inheritable)
            os.close(self.saved)
