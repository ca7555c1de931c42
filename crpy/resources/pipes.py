"""Pipes: dump and restore of either end, with the pipe's size and the bytes in flight.

As in CRIU, each end is one files.img entry (type PIPE, pipe_entry) and both ends share pipe_id,
the pipe's inode number; the data goes once per pipe into pipes-data.img (crpy.resources.pipedata,
read with tee, never consumed).  Restore makes the pipe once per pipe_id, refills it, and hands
out the end each entry asks for; the restore context keeps both ends until every fd is placed.
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
    """A new fd on the right end of the pipe, with the dumped status flags."""
    p = entry.pipe
    ends = ctx.cache.get(("pipe", p.pipe_id))
    if ends is None:
        ends = _make_pipe(ctx, p.pipe_id)
    end = ends[1] if p.flags & O_ACCMODE == os.O_WRONLY else ends[0]
    fd = fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 0)
    fcntl.fcntl(fd, fcntl.F_SETFL, p.flags & _SETFL)
    return fd


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
