"""Restore step (child), `crpy restore --lazy-pages`: which VMAs come in lazily, and handing their
userfaultfd to the lazy-pages daemon (crpy.lazy.daemon).

Lazy, as criu makes them: private anonymous VMAs with saved pages, except those premap must fill
itself (pages shared copy-on-write with a parent or child, mlock()ed, hugetlb, droppable) and
read-only ones (few pages; and moved while registered they came back without VM_ACCOUNT, "ac"),
and those with guard regions or next to one.  Their
slots are mapped but not filled; just before the barrier the child opens a userfaultfd on its own
mm (the task's: the restorer never execs), registers each lazy slot in missing mode, sends the fd
and the list of pages over DIR/lazy-pages.socket, waits for the daemon's "ok" and closes its copy.
The restorer's mremap of each slot to its final address reaches the daemon as a REMAP event.
"""

import json
import os
import socket
import struct

from crpy.errors import RestoreError
from crpy.log import log

SOCKET_NAME = "lazy-pages.socket"
_EAGER_FLAGS = 0x2000 | 0x40000        # MAP_LOCKED, MAP_HUGETLB
_MAP_DROPPABLE, _MAP_TYPE = 0x08, 0x0f
_PROT_WRITE = 2
_MADV_WIPEONFORK = 1 << 18              # vma_entry.madv bit


def socket_path(images_dir):
    return os.path.join(images_dir, SOCKET_NAME)


def check_daemon(images_dir):
    """The daemon's socket path, if something listens there; else a refusal before any fork."""
    path = socket_path(images_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)                # a probe: the daemon drops a connection that says nothing
    except OSError as e:
        raise RestoreError(f"--lazy-pages: cannot reach the lazy-pages daemon at {path}: "
                           f"{os.strerror(e.errno)} (start `crpy lazy-pages -D DIR` first)") from None
    finally:
        s.close()
    return path


def mark_lazy(task, node):
    """Set area.lazy on the task's lazy areas (node: its tree node, whose children may take
    copy-on-write pages from this task's slots)."""
    held_by_kids = {(a.start, a.end) for kid in getattr(node, "children", ()) if kid.task
                    for a in kid.task.areas if a.cow_runs}
    near_guards = _near_guards(task)
    for area in task.areas:
        area.lazy = (area.kind == "anon" and bool(area.runs) and bool(area.prot & _PROT_WRITE) and not area.cow_runs and not area.cow_src
                     and not area.inherit and not area.flags & _EAGER_FLAGS
                     and area.flags & _MAP_TYPE != _MAP_DROPPABLE
                     and (area.start, area.end) not in held_by_kids
                     and (area.start, area.end) not in near_guards)
    _no_lazy_neighbours(task.areas)


def _no_lazy_neighbours(areas):
    """Of two lazy areas that touch, the upper one is restored eagerly.  Both lazy, the page
    that reaches one of them first may take the other's anon_vma (their flags are alike while
    both are registered), and the daemon's unregistering at the end then merges them into one
    VMA where the task had two (seen once in CI: dirtymem's 16 MiB area and the 3 pages above
    it, after a migrate).  An eager area has its own anon_vma from its slot, and a lazy one's
    differs from it while registered."""
    prev = None
    for area in sorted(areas, key=lambda a: a.start):
        if area.lazy and prev is not None and prev.lazy and prev.end == area.start:
            area.lazy = False
        prev = area


def _near_guards(task):
    """(start, end) of the areas holding MADV_GUARD_INSTALL regions and of their neighbours:
    the unregistering at the end would let such a VMA merge with its neighbour (the guards'
    flag does not keep VMAs apart in a merge), where the task had two."""
    spans = [(a.start, a.end) for a in task.areas
             if any(g < a.end and g + n > a.start for g, n in task.guards)]
    return {(a.start, a.end) for a in task.areas
            if any(a.start <= e and a.end >= s for s, e in spans)}


def hand_over(task, slots, sock_path, tasks):
    """Register the lazy slots on a new userfaultfd and give it to the daemon at sock_path;
    every task connects (tasks: how many will), also one with nothing lazy."""
    from crpy.kernel import uffd

    lazy = [s for s in slots if getattr(s.area, "lazy", False)]
    images_dir = os.path.dirname(sock_path)
    areas = [[s.addr, s.area.start, s.area.length, bool(s.area.madv & _MADV_WIPEONFORK),
              [[rel, n, os.path.relpath(path, images_dir), off] for rel, n, path, off in s.area.runs]]
             for s in lazy]
    fd = -1
    try:
        if lazy:
            fd = uffd.open_missing_uffd()
            for s in lazy:
                uffd.register_missing(fd, s.addr, s.addr + s.area.length)
        _send(sock_path, {"pid": task.pid, "tasks": tasks, "areas": areas}, fd)
    finally:
        if fd >= 0:
            os.close(fd)
    log.info("pid %d: %d lazy VMAs (%d bytes of pages) handed to the lazy-pages daemon", task.pid,
             len(lazy), sum(n for s in lazy for _, n, _, _ in s.area.runs))


def _send(sock_path, message, fd):
    data = json.dumps(message).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(sock_path)
        except OSError as e:
            raise RestoreError(f"--lazy-pages: cannot reach the lazy-pages daemon at {sock_path}: "
                               f"{os.strerror(e.errno)} (start `crpy lazy-pages -D DIR` first)") from None
        head = struct.pack("<Q", len(data))
        socket.send_fds(s, [head], [fd] if fd >= 0 else [])
        s.sendall(data)
        if s.recv(2) != b"ok":
            raise RestoreError(f"--lazy-pages: the lazy-pages daemon at {sock_path} refused pid {message['pid']}")
    finally:
        s.close()


def read_message(conn):
    """The daemon's side of _send: (message, fd or -1); (None, -1) for check_daemon's probe."""
    head, fds, _, _ = socket.recv_fds(conn, 8, 1)
    if not head and not fds:
        return None, -1
    while len(head) < 8:
        more = conn.recv(8 - len(head))
        if not more:
            raise EOFError("lazy-pages client closed early")
        head += more
    (size,) = struct.unpack("<Q", head)
    chunks, got = [], 0
    while got < size:
        chunk = conn.recv(min(size - got, 1 << 20))
        if not chunk:
            raise EOFError("lazy-pages client closed early")
        chunks.append(chunk)
        got += len(chunk)
    return json.loads(b"".join(chunks)), (fds[0] if fds else -1)
