"""The kernel's sock_diag netlink interface (NETLINK_SOCK_DIAG), unix sockets: a small layer of our own.

One request, SOCK_DIAG_BY_FAMILY for AF_UNIX with NLM_F_DUMP, lists every unix socket of crpy's
network namespace with the attributes asked for (udiag_show): name, the inode of its file on disk
(VFS), its peer's inode, the peers waiting in a listening socket's queue (ICONS), queue lengths
(RQLEN: for a listening socket the connections waiting and the backlog, else bytes queued to read
and to write) and its shutdown bits.  Only Python's socket and struct: pyroute2 would do the same
at 1.1-1.5 s of import (pyroute2 0.9.7, measured here: `python3 -X importtime -c "import pyroute2"`),
this module under 10 ms (the socket module crpy has loaded already), and it is imported only when
a dump meets a socket.
"""

import struct
from crpy.record import dataclass, field

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
AF_UNIX = 1

# udiag_show bits and the attribute types they bring (linux/unix_diag.h)
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 0x1, 0x2, 0x4, 0x8
UDIAG_SHOW_RQLEN, UDIAG_SHOW_MEMINFO, UDIAG_SHOW_UID = 0x10, 0x20, 0x40
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_MEMINFO, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 4, 5, 6, 7

# socket states as sock_diag reports them (TCP's numbering)
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10
ALL_STATES = 0xFFFFFFFF

_NLMSG = struct.Struct("=IHHII")            # len, type, flags, seq, pid
_UNIX_REQ = struct.Struct("=BBHIIIII")      # family, protocol, pad, states, ino, show, cookie[2]
_UNIX_MSG = struct.Struct("=BBBBIII")       # family, type, state, pad, ino, cookie[2]
_RTA = struct.Struct("=HH")                 # len, type


@dataclass
class UnixDiag:
    """What sock_diag says of one unix socket."""
    ino: int
    type: int                          # SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5
    state: int                         # TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN
    name: bytes = None                 # sun_path as bound (a leading 0 byte: abstract); None: unbound
    vfs_ino: int = 0                   # the socket file's inode and device (bound to a path)
    vfs_dev: int = 0
    peer: int = 0                      # inode of the peer socket, 0: none
    peer_gone: bool = False            # connected to a peer that was closed since (its inode is 0)
    icons: list = field(default_factory=list)    # listening: peers of the connections waiting
    rqueue: int = 0                    # listening: connections waiting; else bytes to read
    wqueue: int = 0                    # listening: the backlog; else bytes written not yet read
    shutdown: int = 0                  # RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2


def _align(n):
    return (n + 3) & ~3


def _attrs(buf, off, end):
    while off + _RTA.size <= end:
        length, kind = _RTA.unpack_from(buf, off)
        if length < _RTA.size:
            break
        yield kind, buf[off + _RTA.size:off + length]
        off += _align(length)


def parse_unix_msg(payload):
    """UnixDiag from the payload of one SOCK_DIAG_BY_FAMILY reply (after the nlmsghdr)."""
    family, stype, state, _, ino, _, _ = _UNIX_MSG.unpack_from(payload, 0)
    d = UnixDiag(ino=ino, type=stype, state=state)
    for kind, data in _attrs(payload, _UNIX_MSG.size, len(payload)):
        if kind == UNIX_DIAG_NAME:
            d.name = bytes(data)
        elif kind == UNIX_DIAG_VFS:
            d.vfs_ino, d.vfs_dev = struct.unpack_from("=II", data)
        elif kind == UNIX_DIAG_PEER:
            d.peer = struct.unpack_from("=I", data)[0]
            d.peer_gone = d.peer == 0
        elif kind == UNIX_DIAG_ICONS:
            d.icons = list(struct.unpack_from(f"={len(data) // 4}I", data))
        elif kind == UNIX_DIAG_RQLEN:
            d.rqueue, d.wqueue = struct.unpack_from("=II", data)
        elif kind == UNIX_DIAG_SHUTDOWN:
            d.shutdown = data[0]
    return d


def unix_request(show, ino=0, states=ALL_STATES, seq=1):
    """The netlink message asking for every unix socket (or the one of inode `ino`)."""
    flags = NLM_F_REQUEST | (0 if ino else NLM_F_DUMP)
    body = _UNIX_REQ.pack(AF_UNIX, 0, 0, states, ino, show, 0xFFFFFFFF, 0xFFFFFFFF)
    return _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body


def _replies(sock, seq):
    """Payloads of the replies to request `seq`, until NLMSG_DONE (or the single answer)."""
    from crpy.errors import KernelError

    while True:
        buf = sock.recv(1 << 16)
        if not buf:
            return
        off = 0
        while off + _NLMSG.size <= len(buf):
            length, kind, flags, rseq, _ = _NLMSG.unpack_from(buf, off)
            if length < _NLMSG.size:
                return
            payload = memoryview(buf)[off + _NLMSG.size:off + length]
            off += _align(length)
            if rseq != seq:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", payload)[0]
                if err:
                    raise KernelError("sock_diag (NETLINK_SOCK_DIAG) request", err)
                return
            yield payload
            if not flags & 0x2:               # NLM_F_MULTI: a dump; else one answer
                return


SHOW_ALL = (UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN)


def unix_sockets(show=SHOW_ALL):
    """{ino: UnixDiag} of every unix socket of crpy's network namespace."""
    import socket

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as s:
        s.sendto(unix_request(show), (0, 0))
        out = {}
        for payload in _replies(s, 1):
            d = parse_unix_msg(payload)
            out[d.ino] = d
        return out
