"""crpy's own sock_diag netlink layer (crpy.kernel.sock_diag): a reply parsed by hand, and what
the kernel says of live unix sockets of this process (peer, name, backlog, queues, shutdown)."""

import os
import socket
import struct

from crpy.kernel import sock_diag


def _ino(s):
    return os.fstat(s.fileno()).st_ino


def _rta(kind, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def test_parse_unix_msg_reads_every_attribute():
    payload = (struct.pack("=BBBBIII", 1, 2, 7, 0, 4242, 0, 0)
               + _rta(sock_diag.UNIX_DIAG_NAME, b"/run/x.sock")
               + _rta(sock_diag.UNIX_DIAG_VFS, struct.pack("=II", 77, 88))
               + _rta(sock_diag.UNIX_DIAG_PEER, struct.pack("=I", 4343))
               + _rta(sock_diag.UNIX_DIAG_ICONS, struct.pack("=II", 5, 6))
               + _rta(sock_diag.UNIX_DIAG_RQLEN, struct.pack("=II", 10, 20))
               + _rta(sock_diag.UNIX_DIAG_SHUTDOWN, b"\x03"))
    d = sock_diag.parse_unix_msg(payload)
    assert (d.ino, d.type, d.state, d.name) == (4242, 2, 7, b"/run/x.sock")
    assert (d.vfs_ino, d.vfs_dev, d.peer, d.icons) == (77, 88, 4343, [5, 6])
    assert (d.rqueue, d.wqueue, d.shutdown) == (10, 20, 3)


def test_request_is_a_dump_of_af_unix():
    msg = sock_diag.unix_request(sock_diag.SHOW_ALL)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) == 16 + 24 and kind == sock_diag.SOCK_DIAG_BY_FAMILY
    assert flags == sock_diag.NLM_F_REQUEST | sock_diag.NLM_F_DUMP and msg[16] == socket.AF_UNIX


def test_live_sockets_as_the_kernel_sees_them():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = b"\0crpy-test-sock-diag-%d" % os.getpid()
    try:
        a.send(b"hello")
        b.shutdown(socket.SHUT_WR)
        lst.bind(name)
        lst.listen(9)
        c.connect(name)
        diag = sock_diag.unix_sockets()
        da, db, dl = diag[_ino(a)], diag[_ino(b)], diag[_ino(lst)]
        assert da.type == db.type == socket.SOCK_SEQPACKET and da.state == sock_diag.TCP_ESTABLISHED
        assert (da.peer, db.peer) == (_ino(b), _ino(a)) and da.name is None
        assert db.rqueue == 5 and (db.shutdown, da.shutdown) == (2, 1)
        assert dl.state == sock_diag.TCP_LISTEN and dl.name == name and not da.peer_gone
        assert (dl.rqueue, dl.wqueue, dl.icons) == (1, 9, [_ino(c)])
    finally:
        for s in (a, b, lst, c):
            s.close()
