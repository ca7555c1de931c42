"""Pipes: dump and restore of either end, with the pipe's size and the bytes in flight.

As in CRIU, each end is one files.img entry (type PIPE, pipe_entry) and both ends share pipe_id,
the pipe's inode number; the data goes once per pipe into pipes-data.img (crpy.resources.pipedata,
read with tee, never consumed).  Restore makes the pipe once per pipe_id, refills it, and hands
out the end each entry asks for; the restore context keeps both ends until every fd is placed.
A pipe can have more open file descriptions than its two ends (opened again through
/proc/self/fd/N, even O_RDWR): each files.img entry is its own description with its own flags,
so only the first entry of each end gets the end pipe2() made; any other is opened anew through
/proc/self/fd of an end (one pipe, a description of its own).
"""

import fcntl
import os

O_ACCMODE = 0o3
O_CLOEXEC = 0o2000000
# Status flags F_SETFL can set again (O_NONBLOCK, O_DIRECT for packet pipes).
_SETFL = os.O_NONBLOCK | 0o40000


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, pipe_pb2
    from crpy.resources import pipedata
    from crpy.resources.regfile import fown

    pipe_id = fdfacts.st.st_ino & 0xFFFFFFFF
    pid = fdfacts.pid

    def dump_data():
        data, size = pipedata.peek(pid, fdfacts.fd)
        files.payload("pipes_data", pipedata.data_entry(pipe_id, size), data)

    files.once(("pipe", pipe_id), dump_data)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.PIPE, id=file_id, pipe=pipe_pb2.pipe_entry(
        id=file_id, pipe_id=pipe_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown()))


def restore_fd(entry, ctx):
    """A new fd on the right end of the pipe, with the dumped status flags: the end pipe2()
    made for the first description of each end, a description of its own for any other."""
    p = entry.pipe
    ends = ctx.cache.get(("pipe", p.pipe_id))
    if ends is None:
        ends = _make_pipe(ctx, p.pipe_id)
    mode = p.flags & O_ACCMODE
    given = ctx.cache.setdefault(("pipe-ends-given", p.pipe_id), set())
    if mode == os.O_RDWR or mode in given:
        fd = reopen(ends[0], mode)
    else:
        fd = fcntl.fcntl(ends[1] if mode == os.O_WRONLY else ends[0], fcntl.F_DUPFD_CLOEXEC, 0)
        given.add(mode)
    fcntl.fcntl(fd, fcntl.F_SETFL, p.flags & _SETFL)
    return fd


def reopen(end, mode):
    """A new open file description of the pipe behind fd `end`, opened `mode` (never waits:
    crpy holds both ends)."""
    return os.open(f"/proc/self/fd/{end}", mode | os.O_NONBLOCK | O_CLOEXEC)


def _make_pipe(ctx, pipe_id):
    from crpy.resources import pipedata

    if "pipes_data" not in ctx.cache:
        ctx.cache["pipes_data"] = pipedata.load(ctx.images_dir, "pipes_data")
    data, size = ctx.cache["pipes_data"].get(pipe_id, (b"", 0))
    r, w = os.pipe2(O_CLOEXEC)
    ends = (ctx.hold(r), ctx.hold(w))
    pipedata.refill(ends[1], data, size)
    ctx.cache[("pipe", pipe_id)] = ends
    return ends
