"""crpy's sock_diag readers for UDP (crpy.kernel.udp_diag) and netlink (crpy.kernel.netlink_diag):
a reply parsed by hand, and what the kernel says of live sockets of this process."""

import socket
import struct

from crpy.kernel import netlink_diag, udp_diag
from tests.unit.test_sock_diag import _ino, _rta


def test_parse_udp_msg_reads_queues_inode_and_shutdown():
    sockid = struct.pack(">HH", 5353, 53) + bytes([127, 0, 0, 1]) + bytes(12) + bytes(16) + bytes(12)
    payload = struct.pack("=BBBB", 2, 1, 0, 0) + sockid + struct.pack("=IIIII", 0, 11, 22, 0, 4242) \
        + _rta(udp_diag.INET_DIAG_SHUTDOWN, b"\x02")
    d = udp_diag.parse_msg(payload)
    assert (d.ino, d.state, d.rqueue, d.wqueue, d.shutdown) == (4242, 1, 11, 22, 2)
    assert (d.family, d.local_addr, d.local_port) == (2, "127.0.0.1", 5353)


def test_live_udp_and_udplite_sockets_with_their_shutdown_bits():
    a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, udp_diag.IPPROTO_UDPLITE)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("::1", 0))
        b.bind(("127.0.0.1", 0))
        b.connect(b.getsockname())
        b.shutdown(socket.SHUT_WR)
        found = udp_diag.udp_sockets()
        assert found[_ino(a)].shutdown == 0 and found[_ino(a)].state == 7
        assert (found[_ino(a)].local_addr, found[_ino(a)].local_port) == a.getsockname()[:2]
        assert found[_ino(b)].shutdown == 2 and found[_ino(b)].state == 1


def test_parse_netlink_msg_reads_groups_and_flags():
    payload = (struct.pack("=BBBBIIIIII", 16, 3, 0, 1, 100, 200, 4, 4343, 0, 0)
               + _rta(netlink_diag.NETLINK_DIAG_GROUPS, struct.pack("=II", 5, 1))
               + _rta(netlink_diag.NETLINK_DIAG_FLAGS, struct.pack("=I", 0x9)))
    d = netlink_diag.parse_msg(payload)
    assert (d.ino, d.type, d.protocol, d.state, d.portid, d.dst_portid, d.dst_group) == (4343, 3, 0, 1, 100, 200, 4)
    assert (d.groups, d.flags) == ([5, 1], 0x9)


def test_live_netlink_socket_with_a_group_past_32():
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.bind((0, 1))
        s.setsockopt(270, 1, 33)                      # NETLINK_ADD_MEMBERSHIP 33
        d = netlink_diag.netlink_sockets()[_ino(s)]
        assert d.portid == s.getsockname()[0] and d.groups[:2] == [1, 1]


def test_netlink_groups_of_a_bitmap():
    from crpy.resources.netlink_socket import groups_of

    assert groups_of([0x5, 0x1]) == [1, 3, 33]
