"""Reading and writing another task's memory (process_vm_readv/writev) and its mappings.

Used by the infection to scan for gadgets, to write the emergency frame and the blob.  A
short transfer is an error: the caller asked for bytes that are not all mapped.
"""

from crpy.errors import ParasiteError, from_errno
from crpy.kernel._sys import ffi, lib


def _xfer(pid, addr, buf, size, write):
    local = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": size})
    remote = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", addr), "iov_len": size})
    fn = lib.process_vm_writev if write else lib.process_vm_readv
    n = fn(pid, local, 1, remote, 1, 0)
    what = f"process_vm_{'writev' if write else 'readv'} of {size} bytes at {addr:#x}"
    if n < 0:
        raise from_errno(ffi.errno, what, pid)
    if n != size:
        raise ParasiteError(f"pid {pid}: {what}: only {n} bytes transferred")


def read(pid, addr, size):
    buf = ffi.new("unsigned char[]", size)
    _xfer(pid, addr, buf, size, False)
    return bytes(ffi.buffer(buf))


def write(pid, addr, data):
    if data:
        _xfer(pid, addr, ffi.from_buffer(data), len(data), True)


class Mapping:
    __slots__ = ("start", "end", "perms", "path")

    def __init__(self, start, end, perms, path):
        self.start, self.end, self.perms, self.path = start, end, perms, path

    def __repr__(self):
        return f"Mapping({self.start:#x}-{self.end:#x} {self.perms} {self.path})"


def mappings(pid):
    """The task's VMAs from /proc/PID/maps (only what the infection needs)."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = parts[0].split("-")
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], path))
    return out


def from_vmas(vmas):
    """The same Mappings from the crpy.kernel.proc.Vma list the dump read before the infection
    (the task has been stopped since: its maps cannot have changed), without reading them again."""
    out = []
    for v in vmas:
        perms = "".join(c if v.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
        path = v.path + " (deleted)" if v.deleted else v.path
        out.append(Mapping(v.start, v.end, perms + ("s" if v.shared else "p"), path))
    return out


def mapping_at(maps, addr):
    for m in maps:
        if m.start <= addr < m.end:
            return m
    return None
