"""The kernel's sock_diag for packet sockets (packet_diag): bound interface and protocol, version,
reserve, copy threshold, timestamp source, the boolean options, multicast list and rings.

One SOCK_DIAG_BY_FAMILY request for AF_PACKET, NLM_F_DUMP, lists every packet socket of crpy's
network namespace; the framing is crpy.kernel.diag_dump's.
"""

import struct
from crpy.record import dataclass, field

AF_PACKET = 17
PACKET_SHOW_INFO, PACKET_SHOW_MCLIST, PACKET_SHOW_RING_CFG, PACKET_SHOW_FANOUT = 0x1, 0x2, 0x4, 0x8
PACKET_DIAG_INFO, PACKET_DIAG_MCLIST, PACKET_DIAG_RX_RING, PACKET_DIAG_TX_RING, PACKET_DIAG_FANOUT = 0, 1, 2, 3, 4
PDI_RUNNING, PDI_AUXDATA, PDI_ORIGDEV, PDI_VNETHDR, PDI_LOSS = 0x1, 0x2, 0x4, 0x8, 0x10

_REQ = struct.Struct("=BBHIIII")          # family, protocol, pad, ino, show, cookie[2]
_MSG = struct.Struct("=BBHIII")           # family, type, num (protocol, host order), ino, cookie[2]
_INFO = struct.Struct("=IIIIII")          # index, version, reserve, copy_thresh, tstamp, flags
_MC = struct.Struct("=IIHH32s")           # index, count, type, alen, addr
_RING = struct.Struct("=IIIIIII")         # block_size, block_nr, frame_size, frame_nr, retire_tmo, sizeof_priv, features


@dataclass
class PacketDiag:
    """What sock_diag says of one packet socket."""
    ino: int
    type: int
    protocol: int
    ifindex: int = 0
    version: int = 0
    reserve: int = 0
    copy_thresh: int = 0
    tstamp: int = 0
    flags: int = 0                     # PDI_*
    mclist: list = field(default_factory=list)     # (ifindex, count, type, address bytes)
    rx_ring: tuple = None              # _RING fields
    tx_ring: tuple = None
    fanout: int = None                 # id | type << 16, None: in no group


def request_body():
    show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT
    return _REQ.pack(AF_PACKET, 0, 0, 0, show, 0xFFFFFFFF, 0xFFFFFFFF)


def parse_msg(payload):
    from crpy.kernel import sock_diag as sd

    _, stype, num, ino, _, _ = _MSG.unpack_from(payload, 0)
    d = PacketDiag(ino=ino, type=stype, protocol=num)
    for kind, data in sd._attrs(payload, _MSG.size, len(payload)):
        if kind == PACKET_DIAG_INFO:
            d.ifindex, d.version, d.reserve, d.copy_thresh, d.tstamp, d.flags = _INFO.unpack_from(data)
        elif kind == PACKET_DIAG_MCLIST:
            for off in range(0, len(data) - _MC.size + 1, _MC.size):
                index, count, mtype, alen, addr = _MC.unpack_from(data, off)
                d.mclist.append((index, count, mtype, bytes(addr[:alen])))
        elif kind == PACKET_DIAG_RX_RING:
            d.rx_ring = _RING.unpack_from(data)
        elif kind == PACKET_DIAG_TX_RING:
            d.tx_ring = _RING.unpack_from(data)
        elif kind == PACKET_DIAG_FANOUT:
            d.fanout = struct.unpack_from("=I", data)[0]
    return d


def packet_sockets():
    """{ino: PacketDiag} of every packet socket of crpy's network namespace."""
    from crpy.kernel import diag_dump

    return diag_dump.collect([request_body()], parse_msg)
