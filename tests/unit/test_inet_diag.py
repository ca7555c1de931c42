"""crpy's INET_DIAG query (crpy.kernel.inet_diag): a reply parsed by hand, and what the kernel says
of live TCP sockets of this process (listen backlog and waiting connections, addresses, ports)."""

import os
import socket
import struct

from crpy.kernel import inet_diag, sock_diag


def _ino(s):
    return os.fstat(s.fileno()).st_ino


def test_parse_inet_msg():
    sockid = (struct.pack("!HH", 8080, 40558) + socket.inet_pton(socket.AF_INET6, "::1")
              + socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1") + struct.pack("=III", 3, 0, 0))
    payload = (struct.pack("=BBBB", socket.AF_INET6, 8, 0, 0) + sockid + struct.pack("=IIIII", 0, 5, 7, 1000, 4242)
               + struct.pack("=HH", 5, inet_diag.INET_DIAG_SHUTDOWN) + b"\x02\0\0\0")
    d = inet_diag.parse_inet_msg(payload)
    assert (d.family, d.state, d.src, d.sport, d.dst, d.dport) == (socket.AF_INET6, 8, "::1", 8080,
                                                                   "::ffff:127.0.0.1", 40558)
    assert (d.ifindex, d.rqueue, d.wqueue, d.uid, d.ino, d.shutdown) == (3, 5, 7, 1000, 4242, 2)


def test_request_is_a_dump_of_family_and_protocol():
    msg = inet_diag.inet_request(socket.AF_INET6, socket.IPPROTO_TCP, states=1 << 10)
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) == 16 + 56 and kind == sock_diag.SOCK_DIAG_BY_FAMILY
    assert flags == sock_diag.NLM_F_REQUEST | sock_diag.NLM_F_DUMP
    assert (msg[16], msg[17]) == (socket.AF_INET6, socket.IPPROTO_TCP)
    assert struct.unpack_from("=I", msg, 20)[0] == 1 << 10


def test_live_listener_and_connection():
    with socket.socket() as lsk:
        lsk.bind(("127.0.0.1", 0))
        lsk.listen(7)
        with socket.create_connection(lsk.getsockname()) as c:
            found = inet_diag.inet_sockets(socket.AF_INET, socket.IPPROTO_TCP)
            d = found[_ino(lsk)]
            assert (d.state, d.src, d.sport, d.rqueue, d.wqueue) == (10, "127.0.0.1", lsk.getsockname()[1], 1, 7)
            e = found[_ino(c)]
            assert (e.state, e.sport, e.dport) == (1, c.getsockname()[1], lsk.getsockname()[1])
            only = inet_diag.inet_sockets(socket.AF_INET, socket.IPPROTO_TCP, ino=_ino(lsk), states=1 << 10)
            assert list(only) == [_ino(lsk)]
    with socket.socket(socket.AF_INET6) as l6:
        l6.bind(("::1", 0))
        l6.listen(3)
        d = inet_diag.inet_sockets(socket.AF_INET6, socket.IPPROTO_TCP)[_ino(l6)]
        assert (d.family, d.src, d.wqueue) == (socket.AF_INET6, "::1", 3)

