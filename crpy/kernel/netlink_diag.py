"""The kernel's sock_diag for netlink sockets (netlink_diag): state, bound and peer port ids,
groups and the flags no getsockopt shows (a dump callback running).

One SOCK_DIAG_BY_FAMILY request for AF_NETLINK, every protocol (NDIAG_PROTO_ALL), NLM_F_DUMP,
lists every netlink socket of crpy's network namespace; the framing is crpy.kernel.diag_dump's.
"""

import struct
from crpy.record import dataclass, field

AF_NETLINK = 16
NDIAG_PROTO_ALL = 255
NDIAG_SHOW_GROUPS, NDIAG_SHOW_FLAGS = 0x2, 0x8
NETLINK_DIAG_GROUPS, NETLINK_DIAG_FLAGS = 1, 4
NDIAG_FLAG_CB_RUNNING = 0x1

_REQ = struct.Struct("=BBHIIII")          # family, protocol, pad, ino, show, cookie[2]
_MSG = struct.Struct("=BBBBIIIIII")       # family, type, protocol, state, portid, dst_portid, dst_group, ino, cookie[2]


@dataclass
class NetlinkDiag:
    """What sock_diag says of one netlink socket."""
    ino: int
    type: int
    protocol: int
    state: int                 # NETLINK_UNCONNECTED 0, NETLINK_CONNECTED 1
    portid: int
    dst_portid: int
    dst_group: int
    groups: list = field(default_factory=list)     # bitmap words, 32 groups each
    flags: int = 0                                 # NDIAG_FLAG_*


def request_body():
    return _REQ.pack(AF_NETLINK, NDIAG_PROTO_ALL, 0, 0, NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS, 0xFFFFFFFF, 0xFFFFFFFF)


def parse_msg(payload):
    from crpy.kernel import sock_diag as sd

    _, stype, proto, state, portid, dst_portid, dst_group, ino, _, _ = _MSG.unpack_from(payload, 0)
    d = NetlinkDiag(ino=ino, type=stype, protocol=proto, state=state, portid=portid,
                    dst_portid=dst_portid, dst_group=dst_group)
    for kind, data in sd._attrs(payload, _MSG.size, len(payload)):
        if kind == NETLINK_DIAG_GROUPS:
            d.groups = list(struct.unpack_from(f"={len(data) // 4}I", data))
        elif kind == NETLINK_DIAG_FLAGS:
            d.flags = struct.unpack_from("=I", data)[0]
    return d


def netlink_sockets():
    """{ino: NetlinkDiag} of every netlink socket of crpy's network namespace."""
    from crpy.kernel import diag_dump

    return diag_dump.collect([request_body()], parse_msg)
