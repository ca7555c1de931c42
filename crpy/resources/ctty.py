"""Controlling terminals that are pty pairs of the dumped tree, and fds on /dev/tty.

Dump: the controlling terminal (tty_nr of /proc/PID/stat) of a session the tree leads must come
back, so check_task refuses, before the parasite, one the restore could not give again: a pty
whose master no task of the tree holds, another kind of terminal (both: --shell-job is the way),
a leader that is not an ancestor of the task (members inherit it from the leader), a foreground
group outside the tree, and a session member without the terminal its leader has (it would gain
it).  A task whose session leader is not in the tree is restored into crpy's session, terminal
included (crpy.restore.child.restore_session), as before.  The pty's slave tty-info entry names the session (sid) and the
foreground group (pgrp), as in CRIU.  A /dev/tty fd is a TTY entry whose tty-info is of type
CTTY; it must be on the task's controlling terminal (TIOCGDEV on a pidfd_getfd copy).

Restore: a session leader takes the slave as controlling terminal (TIOCSCTTY) before it forks
its children, so every member inherits it (the pair is then made by the root for the whole
tree: crpy.resources.shared), or, without children, after its fds; a task of the foreground
group makes it the foreground again once it is in its group; /dev/tty is opened once the
terminal is in place and checked to be that pty.
"""

import fcntl
import os
import termios

O_CLOEXEC = 0o2000000
DEV_TTY_RDEV = os.makedev(5, 0)
TIOCGDEV = 0x80045432
CTTY_INFO_ID = 99990                # the one tty-info entry of every /dev/tty fd


def _pty_index(rdev):
    """N of /dev/pts/N for a pty slave's device number, else None."""
    major = os.major(rdev)
    return (major - 136) * 256 + os.minor(rdev) if 136 <= major <= 143 else None


def check_task(pid):
    """UnsupportedResource unless the controlling terminal of task pid comes back exactly; notes
    the session and foreground group of a pty it has (resources.dump_memo["ctty"])."""
    from crpy import resources
    from crpy.errors import UnsupportedResource
    from crpy.resources import pty

    st = _task_stat(pid)
    if resources.allowed("shell_job") or st.session not in resources.tree_pids:
        return       # the shell's terminal (crpy.resources.tty), or restored into crpy's session with its terminal
    if not st.tty_nr:
        leader = st.session
        if leader != pid and _task_stat(leader).tty_nr:
            raise UnsupportedResource(pid, "session member without the controlling terminal of its leader "
                                      f"{leader}", hint="a restored member would inherit it; dump a tree "
                                      "whose session members all have it")
        return
    name = _tty_name(st.tty_nr)
    index = _pty_index(st.tty_nr)
    if index is None or not pty.master_in_tree(index):
        where = "not a pty" if index is None else "its master is held outside the dumped tree"
        raise UnsupportedResource(pid, f"controlling terminal {name} ({where})",
                                  hint="dump with --shell-job to restore it on crpy's terminal, or dump the "
                                       "tree from the process holding the pty master")
    if not _leader_is_ancestor(pid, st.session):
        raise UnsupportedResource(pid, f"controlling terminal {name} of session {st.session}, whose leader is "
                                  "not this task or an ancestor of it", hint="dump the tree from the session leader")
    tpgid = _foreground_group(pid)
    if tpgid > 0 and not any(_task_stat(p).pgrp == tpgid for p in resources.tree_pids):
        raise UnsupportedResource(pid, f"controlling terminal {name} whose foreground process group {tpgid} "
                                  "is outside the dumped tree", hint="bring a group of the tree to the foreground")
    resources.dump_memo.setdefault("ctty", {})[index] = (st.session, max(tpgid, 0))


def _task_stat(pid):
    """/proc/PID/stat of a task of the dumped tree, read once per dump: every task stays stopped
    for the whole dump, so its session and terminal cannot change (a tree of 128 tasks in one
    session looked up its leader's 128 times)."""
    from crpy import resources
    from crpy.kernel import proc

    seen = resources.dump_memo.setdefault("ctty stat", {})
    st = seen.get(pid)
    if st is None:
        st = seen[pid] = proc.stat(pid)
    return st


def remember_stat(pid, st):
    """/proc/PID/stat of a task of the dumped tree, just read by the caller: _task_stat's."""
    from crpy import resources

    resources.dump_memo.setdefault("ctty stat", {})[pid] = st


def _tty_name(rdev):
    index = _pty_index(rdev)
    return f"/dev/pts/{index}" if index is not None else f"tty {os.major(rdev)}:{os.minor(rdev)}"


def _leader_is_ancestor(pid, sid):
    from crpy import resources

    while pid in resources.tree_pids:
        if pid == sid:
            return True
        pid = _task_stat(pid).ppid
    return False


def _foreground_group(pid):
    from crpy.resources.tty import _session_and_foreground

    return _session_and_foreground(pid)[1]


def is_dev_tty(st):
    return st.st_rdev == DEV_TTY_RDEV


def check_dev_tty(pid, fd, target):
    """UnsupportedResource unless /dev/tty fd `fd` of task pid is on the task's controlling
    terminal, a pty of the tree."""
    from crpy.errors import UnsupportedResource
    from crpy.resources import pty, taskfd

    tty_nr = _task_stat(pid).tty_nr
    mine = taskfd.duplicate(pid, fd)
    try:
        dev = _tiocgdev(mine)
    except OSError:
        dev = None                          # hung up: no terminal behind it any more
    finally:
        os.close(mine)
    index = _pty_index(tty_nr)
    if dev != tty_nr or index is None or not pty.master_in_tree(index):
        raise UnsupportedResource(pid, "tty", fd, target,
                                  "crpy restores /dev/tty only on the task's controlling terminal when that is "
                                  "a pty of the dumped tree; close it before the dump")


def _tiocgdev(fd):
    import struct

    raw = struct.unpack("I", fcntl.ioctl(fd, TIOCGDEV, b"\0" * 4))[0]
    return os.makedev((raw >> 8) & 0xFFF, (raw & 0xFF) | ((raw >> 12) & 0xFFF00))


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, tty_pb2
    from crpy.resources.regfile import fown

    def info():
        files.plain("tty_info", tty_pb2.tty_info_entry(
            id=CTTY_INFO_ID, type=tty_pb2.CTTY, locked=False, exclusive=False, packet_mode=False,
            sid=0, pgrp=0, rdev=DEV_TTY_RDEV))
        return CTTY_INFO_ID

    return fdinfo_pb2.file_entry(type=fdinfo_pb2.TTY, id=file_id, tty=tty_pb2.tty_file_entry(
        id=file_id, tty_info_id=files.once(("tty", "ctty"), info), flags=fdfacts.info.flags & ~O_CLOEXEC,
        fown=fown()))


# ---------------------------------------------------------------- restore side

def _session_info(ctx, sid):
    """The pty slave's tty-info whose session is sid, or None."""
    from crpy.resources import tty

    tty._info(ctx, 0)                                   # loads tty-info.img
    for info in ctx.cache["tty_info"].values():
        if info.HasField("pty") and info.sid == sid and not info.hung_up and info.sid:
            return info
    return None


def take_as_leader(ctx, make=True):
    """A session leader whose controlling terminal was a pty slave takes it again (TIOCSCTTY).
    make: make the pair here when this task does not have it yet."""
    from crpy.resources import pty

    if os.getsid(0) != os.getpid():
        return
    info = _session_info(ctx, os.getpid())
    if info is None:
        return
    pair = pty.made_pair(ctx, info.pty.index)
    if pair is None:
        if not make:
            return
        pair = pty._pair(ctx, info)
    fd = os.open(pair[1], os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
    try:
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    finally:
        os.close(fd)


def before_children(ctx):
    """In a task about to fork its children: a session leader takes its terminal now, so the
    members it forks inherit it (the pair was made by the root: crpy.resources.shared)."""
    take_as_leader(ctx, make=False)


def after_fds(ctx):
    """After the fds are in place: the leader's terminal (if not taken yet), and the foreground
    group when it is this task's group (SIGTTOU is blocked here, so tcsetpgrp cannot stop us)."""
    take_as_leader(ctx)
    info = _session_info(ctx, os.getsid(0))
    if info is None or info.pgrp != os.getpgrp():
        return
    fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
    try:
        os.tcsetpgrp(fd, info.pgrp)
    finally:
        os.close(fd)


def restore_fd(entry, ctx):
    """/dev/tty, once this task's controlling terminal is in place; it must be the dumped pty."""
    from crpy.errors import RestoreError

    take_as_leader(ctx)
    info = _session_info(ctx, os.getsid(0))
    flags = entry.tty.flags & (os.O_ACCMODE | os.O_NONBLOCK)
    try:
        fd = os.open("/dev/tty", flags | O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"cannot open /dev/tty: {e.strerror}", "its session has no controlling terminal") from None
    want = info and os.makedev(136 + info.pty.index // 256, info.pty.index % 256)
    if _tiocgdev(fd) != want:
        os.close(fd)
        raise RestoreError("/dev/tty is not the dumped controlling terminal of the session")
    return fd
