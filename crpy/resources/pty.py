"""Pseudo-terminal pairs held inside the tree: master (/dev/ptmx) and slave (/dev/pts/N) ends.

Dump: each fd is a TTY entry of files.img (tty_file_entry) naming a tty-info.img entry (type PTY,
pty.index N, rdev telling the master 5:2 from the slave, termios, window size, session and
foreground group).  The bytes waiting in the pair go to tty-data.img, one tty_data_entry per
side: what the slave wrote and the master has not read (keyed by the master's info id) and what
was written into the master and the slave has not read (the slave's).  They are read through
crpy's own fds on the pair (the master by pidfd_getfd from whichever task of the tree holds it:
a program often keeps the master of the pty its child runs on; the slave by its path) with the
line discipline made raw for the moment, and written back at once (refill mode: no echo, no
editing, lines kept), so the task loses nothing.  Restore: the pair is made once per index
(/dev/ptmx opened until it hands out index N; once for the whole tree when two tasks hold it,
crpy.resources.shared), refilled, then given its termios and window size, and the slave node its
owner, group and mode; the controlling terminal side is crpy.resources.ctty's.  A slave must
have its master in the tree (else the dump refuses it).  A hung-up slave (its master closed,
/dev/pts/N deleted) is made as it came about: a pair with index N whose master is closed at once.
"""

import fcntl
import os
import struct
import termios

O_CLOEXEC = 0o2000000
PTMX_RDEV = os.makedev(5, 2)
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def is_pty(st):
    return st.st_rdev == PTMX_RDEV or 136 <= os.major(st.st_rdev) <= 143


def index_of(fdfacts):
    if fdfacts.st.st_rdev == PTMX_RDEV:
        return int(fdfacts.info.raw["tty-index"])
    return (os.major(fdfacts.st.st_rdev) - 136) * 256 + os.minor(fdfacts.st.st_rdev)


def info_ids(index):
    """(master, slave) tty-info.img ids of pty `index` (apart from --shell-job's ids)."""
    return 100000 + 2 * index, 100001 + 2 * index


def hung_up(fdfacts):
    """A slave whose master was closed: the kernel hung it up and removed /dev/pts/N."""
    return fdfacts.st.st_rdev != PTMX_RDEV and fdfacts.target.endswith(" (deleted)")


def check_fd(pid, fd, target, st):
    """UnsupportedResource (before the parasite) for a pty end the restore could not make again:
    a slave whose master no task of the tree holds (the pair's other side would be missing), a
    hung-up slave whose number another pty has taken since."""
    from crpy.errors import UnsupportedResource

    if st.st_rdev == PTMX_RDEV:
        return
    index = (os.major(st.st_rdev) - 136) * 256 + os.minor(st.st_rdev)
    if target.endswith(" (deleted)"):
        if os.path.exists(f"/dev/pts/{index}"):
            raise UnsupportedResource(pid, "hung-up pty slave", fd, target,
                                      "its number is now used by another pty; close that one or this fd")
        return
    if not master_in_tree(index):
        raise UnsupportedResource(pid, "tty", fd, target,
                                  "its master is held outside the dumped tree: dump the process holding the "
                                  "master too, or with --shell-job if this is the terminal it was started from")


def master_in_tree(index):
    """True when a task of the dumped tree holds the master of pty `index` (remembered per dump)."""
    from crpy import resources

    memo = resources.dump_memo.setdefault("pty-master", {})
    if index not in memo:
        memo[index] = _find_master(index) is not None
    return memo[index]


def _find_master(index):
    """(pid, fd) of a task of the dumped tree holding the master of pty `index`, or None."""
    from crpy import resources
    from crpy.errors import CrpyError

    for holder in resources.tree_pids:
        try:
            fd = _master_fd(holder, index)
        except (CrpyError, OSError):
            continue                                  # a task without a readable fd table
        if fd is not None:
            return holder, fd
    return None


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, tty_pb2
    from crpy.resources.regfile import fown

    index, master = index_of(fdfacts), fdfacts.st.st_rdev == PTMX_RDEV
    if hung_up(fdfacts):
        info_id = files.once(("pty-hung-up", index), lambda: _dump_hung_up(fdfacts, index, files))
    else:
        pair = files.once(("pty", index), lambda: _dump_pair(fdfacts.pid, index, files))
        info_id = pair[0] if master else pair[1]
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.TTY, id=file_id, tty=tty_pb2.tty_file_entry(
        id=file_id, tty_info_id=info_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown()))


def _dump_hung_up(fdfacts, index, files):
    """tty-info of a hung-up slave: its number only (termios, size and data are gone with it)."""
    from crpy.images.pb import tty_pb2

    s_id = info_ids(index)[1]
    files.plain("tty_info", tty_pb2.tty_info_entry(
        id=s_id, type=tty_pb2.PTY, locked=False, exclusive=False, packet_mode=False, sid=0, pgrp=0,
        rdev=fdfacts.st.st_rdev & 0xFFFFFFFF, pty=tty_pb2.tty_pty_entry(index=index), hung_up=True))
    return s_id


def _grab_master(pid, index):
    """crpy's own fd on the master of pty `index` (pidfd_getfd), from task pid when it holds it,
    else from whichever task of the dumped tree does (a program holding the master of the pty
    its child runs on)."""
    from crpy.resources import taskfd

    fd = _master_fd(pid, index)
    holder = (pid, fd) if fd is not None else _find_master(index)
    return taskfd.duplicate(*holder)


def _master_fd(pid, index):
    """Number of an fd of task pid on the master of pty `index`, or None."""
    from crpy.kernel import proc

    for fd in proc.fds(pid):
        st = proc.fd_stat(pid, fd)
        if st.st_rdev == PTMX_RDEV and int(proc.fdinfo(pid, fd).raw.get("tty-index", -1)) == index:
            return fd
    return None


def _dump_pair(pid, index, files):
    """(master info id, slave info id) of pty `index`; its tty-info and tty-data entries.  The
    slave's entry names the session whose controlling terminal it is (crpy.resources.ctty)."""
    from crpy import resources
    from crpy.images.pb import tty_pb2
    from crpy.resources.tty import _termios_entry

    master = _grab_master(pid, index)
    slave_path = f"/dev/pts/{index}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | O_CLOEXEC)
    try:
        node = os.fstat(slave)
        attrs = termios.tcgetattr(slave)
        ws = struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8))
        out_q, in_q = _peek_queues(master, slave, attrs)
    finally:
        os.close(slave)
        os.close(master)
    m_id, s_id = info_ids(index)
    sid, pgrp = resources.dump_memo.get("ctty", {}).get(index, (0, 0))
    for info_id, rdev in ((m_id, PTMX_RDEV), (s_id, os.makedev(136 + index // 256, index % 256))):
        info = tty_pb2.tty_info_entry(
            id=info_id, type=tty_pb2.PTY, locked=False, exclusive=False, packet_mode=False, sid=0,
            pgrp=0, rdev=rdev & 0xFFFFFFFF, termios=_termios_entry(attrs), pty=tty_pb2.tty_pty_entry(index=index),
            winsize=tty_pb2.winsize_entry(ws_row=ws[0], ws_col=ws[1], ws_xpixel=ws[2], ws_ypixel=ws[3]))
        if info_id == s_id:                     # the slave node's owner, and the session it leads
            info.uid, info.gid, info.mode = node.st_uid, node.st_gid, node.st_mode & 0o7777
            info.sid, info.pgrp = sid, pgrp
        files.plain("tty_info", info)
    for info_id, data in ((m_id, out_q), (s_id, in_q)):
        if data:
            files.plain("tty_data", tty_pb2.tty_data_entry(tty_id=info_id, data=data))
    return m_id, s_id


def _raw(attrs):
    """attrs with every input/output processing, echo and line editing off; reads never wait."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    cc = list(cc)
    cc[termios.VMIN], cc[termios.VTIME] = 0, 0
    return [0, oflag & ~termios.OPOST, cflag, lflag & ~(termios.ICANON | termios.ECHO | termios.ISIG |
                                                        termios.IEXTEN | termios.ECHONL), ispeed, ospeed, cc]


def _refill_mode(attrs):
    """attrs for writing queued bytes back: no echo, no signals, no input/output processing and no
    editing characters, but line mode (ICANON) as it was, so lines are split as they were."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    cc = list(cc)
    if lflag & termios.ICANON:
        for i in (termios.VEOF, termios.VEOL, termios.VEOL2, termios.VERASE, termios.VWERASE,
                  termios.VKILL, termios.VREPRINT, termios.VLNEXT):
            cc[i] = 0 if isinstance(cc[i], int) else b"\0"
    return [0, oflag & ~termios.OPOST, cflag, lflag & ~(termios.ECHO | termios.ECHOE | termios.ECHOK |
                                                        termios.ECHONL | termios.ISIG | termios.IEXTEN),
            ispeed, ospeed, cc]


def _drain(fd):
    out = b""
    while True:
        try:
            b = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return out
        if not b:
            return out
        out += b


def _peek_queues(master, slave, attrs):
    """(bytes the master has to read, bytes the slave has to read), put back where they were."""
    termios.tcsetattr(slave, termios.TCSANOW, _raw(attrs))
    flags = fcntl.fcntl(master, fcntl.F_GETFL)        # the task's own description: put back after
    try:
        fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        out_q, in_q = _drain(master), _drain(slave)
        termios.tcsetattr(slave, termios.TCSANOW, _refill_mode(attrs))
        refill(master, slave, out_q, in_q)
    finally:
        fcntl.fcntl(master, fcntl.F_SETFL, flags)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return out_q, in_q


def refill(master, slave, out_q, in_q):
    """In refill mode: out_q into the master's input (written at the slave: output processing is
    done in write(), and the master side is raw), in_q into the slave's input with TIOCSTI, which
    feeds the line discipline at once (bytes written at the master are processed later, maybe
    after the real termios is back, and would be echoed)."""
    view, off = memoryview(out_q), 0
    while off < len(out_q):
        off += os.write(slave, view[off:])
    for byte in in_q:
        fcntl.ioctl(slave, termios.TIOCSTI, bytes([byte]))


# ---------------------------------------------------------------- restore side

def restore_fd(entry, ctx):
    from crpy.resources import tty

    info = tty._info(ctx, entry.tty.tty_info_id)
    if info.hung_up:
        return _hung_up_slave(info.pty.index, entry.tty.flags)
    master, slave_path = _pair(ctx, info)
    if info.rdev == PTMX_RDEV & 0xFFFFFFFF:
        fd = fcntl.fcntl(master, fcntl.F_DUPFD_CLOEXEC, 0)
        fcntl.fcntl(fd, fcntl.F_SETFL, entry.tty.flags & os.O_NONBLOCK)
        return fd
    flags = entry.tty.flags & (os.O_ACCMODE | os.O_NONBLOCK)
    return os.open(slave_path, flags | os.O_NOCTTY | O_CLOEXEC)


def _pair(ctx, info):
    key = ("pty", info.pty.index)
    if key not in ctx.cache:
        master = ctx.hold(_open_ptmx_index(info.pty.index))
        path = f"/dev/pts/{info.pty.index}"
        slave = ctx.hold(os.open(path, os.O_RDWR | os.O_NOCTTY | O_CLOEXEC))  # kept: the pair stays whole
        _refill_pair(ctx, master, slave, info)
        _give_slave_node(path, _slave_info(ctx, info.pty.index))
        ctx.cache[key] = (master, path)
    return ctx.cache[key]


def _give_slave_node(path, info):
    """The dumped owner, group and mode of /dev/pts/N (the kernel gave crpy's)."""
    if info is not None and info.HasField("uid"):
        os.chown(path, info.uid, info.gid)
    if info is not None and info.HasField("mode"):
        os.chmod(path, info.mode)


def _hung_up_slave(index, flags):
    """A slave /dev/pts/INDEX hung up as the dumped one was: opened, then its master closed."""
    master = _open_ptmx_index(index)
    try:
        fd = os.open(f"/dev/pts/{index}", (flags & (os.O_ACCMODE | os.O_NONBLOCK)) | os.O_NOCTTY | O_CLOEXEC)
    finally:
        os.close(master)
    return fd


def made_pair(ctx, index):
    """(master fd, slave path) of pty `index` when this task has it already (made or inherited)."""
    return ctx.cache.get(("pty", index))


def _slave_info(ctx, index):
    from crpy.resources import tty

    tty._info(ctx, 0)                                   # loads tty-info.img
    for info in ctx.cache["tty_info"].values():
        if info.HasField("pty") and info.pty.index == index and info.rdev != PTMX_RDEV & 0xFFFFFFFF:
            return info
    return None


def _open_ptmx_index(index, wait_s=3.0):
    """A new master whose slave is /dev/pts/INDEX, waiting a little for the index to be free (the
    kernel releases a killed task's pty asynchronously)."""
    import time

    from crpy.errors import RestoreError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _try_ptmx_index(index)
        except RestoreError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _try_ptmx_index(index):
    """A new master whose slave is /dev/pts/INDEX (the kernel hands out the lowest free index)."""
    from crpy.errors import RestoreError

    extra = []
    try:
        for _ in range(index + 1):
            fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
            got = struct.unpack("I", fcntl.ioctl(fd, TIOCGPTN, b"\0" * 4))[0]
            if got == index:
                fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("i", 0))
                return fd
            extra.append(fd)
            if got > index:
                break
    finally:
        for fd in extra:
            os.close(fd)
    raise RestoreError(f"cannot get pseudo-terminal /dev/pts/{index} again: it is taken",
                       "close whatever holds that pty, then restore")


def _refill_pair(ctx, master, slave, info):
    from crpy.resources import tty

    data = _tty_data(ctx)
    m_id, s_id = info_ids(info.pty.index)
    t = info.termios
    attrs = [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_ispeed, t.c_ospeed, list(t.c_cc)]
    termios.tcsetattr(slave, termios.TCSANOW, _refill_mode(attrs))
    refill(master, slave, data.get(m_id, b""), data.get(s_id, b""))
    tty._apply(slave, info)


def _tty_data(ctx):
    if "tty_data" not in ctx.cache:
        from crpy.images import framing

        p = framing.image_path(ctx.images_dir, "tty_data")
        ctx.cache["tty_data"] = ({e.tty_id: bytes(e.data) for e in framing.read_image(p, "tty_data")}
                                 if os.path.exists(p) else {})
    return ctx.cache["tty_data"]
