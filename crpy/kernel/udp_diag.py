"""The kernel's sock_diag for UDP and UDP-Lite sockets (inet_diag, udp_diag): shutdown bits and
queue lengths, which no getsockopt tells.

One SOCK_DIAG_BY_FAMILY request (inet_diag_req_v2, NLM_F_DUMP) per family and protocol lists every
socket of crpy's network namespace; each reply is an inet_diag_msg followed by attributes, of which
INET_DIAG_SHUTDOWN (always sent) is read.  The framing is crpy.kernel.diag_dump's.
"""

import struct
from crpy.record import dataclass

INET_DIAG_SHUTDOWN = 8
IPPROTO_UDP, IPPROTO_UDPLITE = 17, 136
AF_INET, AF_INET6 = 2, 10

_REQ = struct.Struct("=BBBBI48x")              # family, protocol, ext, pad, states, sockid (any)
# family, state, timer, retrans, id (sport, dport: big-endian; src, dst; if; cookie), expires, rqueue, wqueue, uid, inode
_MSG = struct.Struct("=BBBB2s2s16s16sI8xIIIII")


@dataclass
class UdpDiag:
    """What sock_diag says of one UDP or UDP-Lite socket."""
    ino: int
    state: int                  # TCP_ESTABLISHED (connected) or TCP_CLOSE
    family: int = AF_INET
    local_addr: str = ""        # bound address ("0.0.0.0", "::" unbound) and port
    local_port: int = 0
    rqueue: int = 0             # receive memory in use (datagrams queued)
    wqueue: int = 0             # send memory in use (corked data not yet sent)
    shutdown: int = 0           # RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2


def request_body(family, protocol):
    """inet_diag_req_v2 asking for every socket of `family` and `protocol`."""
    from crpy.kernel import sock_diag as sd

    return _REQ.pack(family, protocol, 0, 0, sd.ALL_STATES)


def parse_msg(payload):
    """UdpDiag from the payload of one reply (after the nlmsghdr)."""
    from crpy.kernel import sock_diag as sd

    import socket

    family, state, _, _, sport, _, src, _, _, _, rqueue, wqueue, _, ino = _MSG.unpack_from(payload, 0)
    addr = socket.inet_ntop(family, src[:4] if family == AF_INET else src)
    d = UdpDiag(ino=ino, state=state, family=family, local_addr=addr, local_port=int.from_bytes(sport, "big"),
                rqueue=rqueue, wqueue=wqueue)
    for kind, data in sd._attrs(payload, _MSG.size, len(payload)):
        if kind == INET_DIAG_SHUTDOWN:
            d.shutdown = data[0]
    return d


def udp_sockets():
    """{ino: UdpDiag} of every UDP and UDP-Lite socket, v4 and v6, of crpy's network namespace."""
    from crpy.kernel import diag_dump

    return diag_dump.collect([request_body(f, p) for f in (AF_INET, AF_INET6) for p in (IPPROTO_UDP, IPPROTO_UDPLITE)],
                             parse_msg)
