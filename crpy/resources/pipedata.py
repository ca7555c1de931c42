"""Bytes in flight in a pipe or FIFO: copied out without consuming them, put back at restore.

Dump: open the pipe again through /proc/PID/fd/N (read side, non-blocking: the task's own
ends are untouched), tee() every buffer into a pipe of our own of the same size, and read the
copy.  The task's pipe keeps its data; nothing is read from it.  Restore: a fresh pipe gets
the dumped F_GETPIPE_SZ and the bytes written back before any fd is handed to the task.
"""

import fcntl
import os
import struct

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
FIONREAD = 0x541B
SPLICE_F_NONBLOCK = 2
O_CLOEXEC = 0o2000000

_NR_TEE = 276                  # x86_64; through crpy's cffi module: ctypes costs ms of a dump's start-up


def _tee(src, dst, length):
    from crpy.errors import KernelError
    from crpy.kernel.syscalls import sys_call

    try:
        return sys_call(_NR_TEE, src, dst, length, SPLICE_F_NONBLOCK, what="tee")
    except KernelError as e:
        raise OSError(e.errno, os.strerror(e.errno)) from None


def _in_flight(fd):
    return struct.unpack("i", fcntl.ioctl(fd, FIONREAD, bytes(4)))[0]


def peek(pid, fd):
    """(bytes waiting in the pipe behind /proc/PID/fd/FD, its F_GETPIPE_SZ), nothing consumed."""
    src = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | O_CLOEXEC)
    try:
        size = fcntl.fcntl(src, F_GETPIPE_SZ)
        want = _in_flight(src)
        if want == 0:
            return b"", size
        r, w = os.pipe2(os.O_NONBLOCK | O_CLOEXEC)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, size)
            copied = _tee(src, w, want)
            if copied != want:
                raise OSError(0, f"tee copied {copied} of {want} bytes in flight")
            return _read_exactly(r, want), size
        finally:
            os.close(r)
            os.close(w)
    finally:
        os.close(src)


def _read_exactly(fd, n):
    chunks, left = [], n
    while left:
        b = os.read(fd, min(left, 1 << 20))
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def refill(write_fd, data, size):
    """Give a freshly made pipe its size and its bytes in flight (write_fd: any writable end)."""
    if size:
        try:
            fcntl.fcntl(write_fd, F_SETPIPE_SZ, size)
        except OSError as e:
            from crpy.errors import RestoreError

            raise RestoreError(f"cannot give a pipe its size of {size} bytes: {e.strerror}",
                               "raise fs.pipe-max-size to at least the dumped size") from None
    view, off = memoryview(data), 0
    while off < len(data):
        off += os.write(write_fd, view[off:off + (1 << 20)])


def load(images_dir, kind):
    """{pipe_id: (data, size)} from pipes-data.img / fifo-data.img ({} when there is none)."""
    from crpy.images import framing

    path = framing.image_path(images_dir, kind)
    if not os.path.exists(path):
        return {}
    return {e.pipe_id: (bytes(data), e.size if e.HasField("size") else 0)
            for e, data in framing.read_payload_image(path, kind)}


def data_entry(pipe_id, size):
    from crpy.images.pb import pipe_data_pb2

    return pipe_data_pb2.pipe_data_entry(pipe_id=pipe_id, bytes=0, size=size)
