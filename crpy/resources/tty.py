"""--shell-job: the terminal a task was started from, restored onto the terminal of `crpy restore`.

Dump (only with --shell-job): an fd on the task's controlling terminal is a TTY entry of
files.img (tty_file_entry) pointing at one tty-info.img entry per terminal: its termios, window
size, session and foreground process group, read through /proc/PID/fd/N.  Restore: such fds are
opened on the terminal crpy restore itself runs on (its stdin, stdout or stderr), the dumped
termios and window size are applied to it, and a task of the dumped foreground group makes its
group the foreground group again (SIGTTOU is blocked in the restored child, so this cannot stop it).
Pseudo-terminal pairs held inside the tree are crpy.resources.pty's, /dev/tty crpy.resources.ctty's.
"""

import fcntl
import os
import struct
import termios

O_CLOEXEC = 0o2000000
PTY_MAJORS = set(range(136, 144))


def is_shell_terminal(pid, st):
    """True for an fd on the controlling terminal of task `pid`."""
    from crpy.kernel import proc

    tty_nr = proc.stat(pid).tty_nr
    return tty_nr != 0 and st.st_rdev == tty_nr


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, tty_pb2
    from crpy.resources.regfile import fown

    info_id = files.once(("tty", fdfacts.st.st_rdev), lambda: _dump_info(fdfacts, file_id, files))
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.TTY, id=file_id, tty=tty_pb2.tty_file_entry(
        id=file_id, tty_info_id=info_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown()))


def _dump_info(fdfacts, info_id, files):
    from crpy.images.pb import tty_pb2

    fd = os.open(f"/proc/{fdfacts.pid}/fd/{fdfacts.fd}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | O_CLOEXEC)
    try:
        attrs = termios.tcgetattr(fd)
        ws = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    finally:
        os.close(fd)
    sid, pgrp = _session_and_foreground(fdfacts.pid)    # (the ioctls answer only the tty's session)
    rdev = fdfacts.st.st_rdev
    files.plain("tty_info", tty_pb2.tty_info_entry(
        id=info_id, type=tty_pb2.PTY if os.major(rdev) in PTY_MAJORS else tty_pb2.VT, locked=False,
        exclusive=False, packet_mode=False, sid=sid, pgrp=pgrp, rdev=rdev & 0xFFFFFFFF,
        termios=_termios_entry(attrs), winsize=tty_pb2.winsize_entry(ws_row=ws[0], ws_col=ws[1],
                                                                    ws_xpixel=ws[2], ws_ypixel=ws[3])))
    return info_id


def _session_and_foreground(pid):
    """(session id, foreground process group of its terminal) of task pid, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[3]), int(fields[5])


def _termios_entry(attrs):
    from crpy.images.pb import tty_pb2

    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    return tty_pb2.termios_entry(c_iflag=iflag, c_oflag=oflag, c_cflag=cflag, c_lflag=lflag, c_line=0,
                                 c_ispeed=ispeed, c_ospeed=ospeed,
                                 c_cc=[c if isinstance(c, int) else ord(c) for c in cc])


# ---------------------------------------------------------------- restore side

def restore_terminal_path():
    """Path of the terminal crpy restore runs on (looked up before any fd is replaced)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.ttyname(fd)
        except OSError:
            continue
    return None


def restore_fd(entry, ctx):
    from crpy.errors import RestoreError
    from crpy.images.pb import tty_pb2

    info = _info(ctx, entry.tty.tty_info_id)
    if info is not None and info.HasField("pty"):
        from crpy.resources import pty

        return pty.restore_fd(entry, ctx)
    if info is not None and info.type == tty_pb2.CTTY:
        from crpy.resources import ctty

        return ctty.restore_fd(entry, ctx)
    path = ctx.cache.get("terminal")
    if path is None:
        raise RestoreError("the task was on a terminal (--shell-job), but crpy restore runs on none",
                           "run crpy restore from a terminal")
    fd = os.open(path, (entry.tty.flags & ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL)) | os.O_NOCTTY | O_CLOEXEC)
    if info is not None and ("tty-set", path) not in ctx.cache:
        ctx.cache[("tty-set", path)] = info
        _apply(fd, info)
    return fd


def _info(ctx, info_id):
    if "tty_info" not in ctx.cache:
        from crpy.images import framing

        p = framing.image_path(ctx.images_dir, "tty_info")
        ctx.cache["tty_info"] = {e.id: e for e in framing.read_image(p, "tty_info")} if os.path.exists(p) else {}
    return ctx.cache["tty_info"].get(info_id)


def _apply(fd, info):
    if info.HasField("termios"):
        t = info.termios
        termios.tcsetattr(fd, termios.TCSANOW, [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_ispeed,
                                                 t.c_ospeed, list(t.c_cc)])
    if info.HasField("winsize"):
        w = info.winsize
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel))


def take_foreground(ctx):
    """After the fds are placed (and the session and group are restored): a task of the dumped
    foreground group makes its group the foreground group of the terminal again."""
    for key, info in list(ctx.cache.items()):
        if isinstance(key, tuple) and key[0] == "tty-set" and info.pgrp == os.getpgrp():
            fd = os.open(key[1], os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
            try:
                os.tcsetpgrp(fd, os.getpgrp())
            except OSError:
                pass                        # not our controlling terminal: nothing to take
            finally:
                os.close(fd)
