"""Named pipes (FIFOs): dump and restore in any access mode, with the bytes in flight.

As in CRIU: the path is a REG entry of files.img (regf_id) and the fd's entry is a FIFO entry
(fifo_entry) naming it, with pipe_id the FIFO's inode number; the data goes once per FIFO into
fifo-data.img.  Restore first opens the FIFO read-write without blocking (a reader and a writer
exist from then on, so no later open blocks), refills it through that helper, then opens each
end with its own flags; the helper is closed once every fd is placed.  A FIFO unlinked since
is a ghost (crpy.resources.ghost): made again with mknod before the fork, opened through it,
removed once the tasks hold it; its bytes in flight come back the same way.
"""

import fcntl
import os

O_CLOEXEC = 0o2000000
_SETFL = os.O_NONBLOCK | os.O_APPEND | 0o40000


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, fifo_pb2
    from crpy.resources import pipedata, regfile

    pipe_id = fdfacts.st.st_ino & 0xFFFFFFFF
    pid, fd = fdfacts.pid, fdfacts.fd

    def dump_data():
        data, size = pipedata.peek(pid, fd)
        files.payload("fifo_data", pipedata.data_entry(pipe_id, size), data)

    files.once(("fifo", pipe_id), dump_data)
    if fdfacts.target.endswith(" (deleted)"):
        from crpy.resources import ghost

        regf_id = files.add(lambda fid: ghost.dump_fd(fdfacts, fid, files))
    else:
        regf_id = files.add(lambda fid: regfile.file_entry(fid, fdfacts.target, fdfacts.st, fdfacts.info.flags))
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.FIFO, id=file_id,
                                 fifo=fifo_pb2.fifo_entry(id=file_id, pipe_id=pipe_id, regf_id=regf_id))


def restore_fd(entry, ctx):
    from crpy.errors import RestoreError
    from crpy.resources import regfile

    reg_entry = ctx.files.get(entry.fifo.regf_id)
    if reg_entry is None or not reg_entry.HasField("reg"):
        raise RestoreError(f"FIFO entry {entry.id} names file id {entry.fifo.regf_id}, absent from files.img")
    from crpy.resources import ghost

    reg = reg_entry.reg
    path = ghost.restored_path(ctx, reg_entry.id) or reg.name
    _helper(ctx, entry.fifo.pipe_id, reg, path)
    fd = regfile.open_reg(reg, flags=reg.flags | os.O_NONBLOCK, path=path)
    fcntl.fcntl(fd, fcntl.F_SETFL, reg.flags & _SETFL)
    return fd


def _helper(ctx, pipe_id, reg, path):
    """The read-write fd that keeps the FIFO open (and refilled) while its ends are opened."""
    from crpy.errors import RestoreError
    from crpy.resources import pipedata

    key = ("fifo", pipe_id)
    if key in ctx.cache:
        return ctx.cache[key]
    if "fifo_data" not in ctx.cache:
        ctx.cache["fifo_data"] = pipedata.load(ctx.images_dir, "fifo_data")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"cannot open FIFO {reg.name}: {e.strerror}",
                           "the FIFO must exist at the same path as at dump time") from None
    fd = ctx.hold(fd)
    data, size = ctx.cache["fifo_data"].get(pipe_id, (b"", 0))
    fcntl.fcntl(fd, fcntl.F_SETFL, 0)
    pipedata.refill(fd, data, size)
    ctx.cache[key] = fd
    return fd
