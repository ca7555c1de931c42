"""The kernel's sock_diag netlink interface for inet sockets (INET_DIAG): TCP, UDP and friends.

One SOCK_DIAG_BY_FAMILY request (inet_diag_req_v2) for an address family and a protocol lists
every such socket of crpy's network namespace: state, local and remote address and port, queue
lengths (for a listening socket: connections waiting to be accepted, and the backlog), owner,
inode, and the shutdown bits.  No policy here: callers filter (by inode) and decide.  The
netlink framing is crpy.kernel.sock_diag's; imported only when a dump meets an inet socket.
"""

import socket
import struct

from crpy.record import dataclass

INET_DIAG_SHUTDOWN = 8
ALL_STATES = 0xFFFFFFFF
_INET_REQ = struct.Struct("=BBBBI48s")      # family, protocol, ext, pad, states, inet_diag_sockid
_INET_MSG = struct.Struct("=BBBB48sIIIII")  # family, state, timer, retrans, id, expires, rqueue, wqueue, uid, inode
_SOCKID = struct.Struct("=2s2s16s16sIII")    # sport, dport (big endian), src, dst, ifindex, cookie[2]

# TCP states, as the kernel numbers them (include/net/tcp_states.h)
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


@dataclass
class InetDiag:
    """What sock_diag says of one inet socket."""
    family: int                       # AF_INET or AF_INET6
    state: int                        # TCP_* numbering, for every protocol
    src: str                          # local address, as inet_ntop writes it
    sport: int
    dst: str
    dport: int
    ifindex: int
    rqueue: int                       # listening: connections waiting; else bytes to read
    wqueue: int                       # listening: the backlog; else bytes not yet acknowledged
    uid: int
    ino: int
    shutdown: int = 0                 # RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2


def inet_request(family, protocol, states=ALL_STATES, seq=1):
    """The netlink message asking for every socket of (family, protocol)."""
    from crpy.kernel import sock_diag

    body = _INET_REQ.pack(family, protocol, 0, 0, states, bytes(48))
    return sock_diag._NLMSG.pack(sock_diag._NLMSG.size + len(body), sock_diag.SOCK_DIAG_BY_FAMILY,
                                 sock_diag.NLM_F_REQUEST | sock_diag.NLM_F_DUMP, seq, 0) + body


def _address(family, raw):
    return socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw)


def parse_inet_msg(payload):
    """InetDiag from the payload of one reply (after the nlmsghdr)."""
    from crpy.kernel import sock_diag

    family, state, _, _, sockid, _, rq, wq, uid, ino = _INET_MSG.unpack_from(payload, 0)
    sport, dport, src, dst, ifindex, _, _ = _SOCKID.unpack(sockid)
    d = InetDiag(family=family, state=state, src=_address(family, src), sport=int.from_bytes(sport, "big"),
                 dst=_address(family, dst), dport=int.from_bytes(dport, "big"), ifindex=ifindex, rqueue=rq, wqueue=wq, uid=uid, ino=ino)
    for kind, data in sock_diag._attrs(payload, _INET_MSG.size, len(payload)):
        if kind == INET_DIAG_SHUTDOWN and len(data):
            d.shutdown = data[0]
    return d


def inet_sockets(family, protocol, ino=None, states=ALL_STATES):
    """{ino: InetDiag} of the sockets of (family, protocol) in crpy's network namespace; only
    the one of inode `ino` when given ({} if it is not there)."""
    from crpy.kernel import sock_diag

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, sock_diag.NETLINK_SOCK_DIAG) as s:
        s.sendto(inet_request(family, protocol, states), (0, 0))
        out = {}
        for payload in sock_diag._replies(s, 1):
            d = parse_inet_msg(payload)
            if ino is None or d.ino == ino:
                out[d.ino] = d
        return out
