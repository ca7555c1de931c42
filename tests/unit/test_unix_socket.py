"""Unix socket pieces without a dump: naming a socket's kind, telling the accepted end of a
connection, grouping the files.img entries of connected sockets (made together at restore)."""

import os
import socket
from types import SimpleNamespace as NS

from crpy.images.pb import fdinfo_pb2, sk_opts_pb2, sk_unix_pb2
from crpy.resources import unix_make, unix_socket
from crpy.resources.regfile import fown


def test_socket_kind_from_the_kernels_protocol_name():
    pid = os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as u, socket.socket() as t, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as d:
        assert unix_socket.socket_kind(pid, u.fileno()) == "unixsk"
        assert unix_socket.socket_kind(pid, t.fileno()) == "TCP socket"
        assert unix_socket.socket_kind(pid, d.fileno()) == "UDP socket"


def test_accepted_end_bears_the_listeners_name():
    server, client = NS(name=b"/run/s"), NS(name=None)
    assert unix_socket.accepted_end(server, client, set()) is server
    assert unix_socket.accepted_end(client, server, set()) is server
    assert unix_socket.accepted_end(server, None, set()) is server          # its client closed
    bound_client = NS(name=b"/run/c")
    assert unix_socket.accepted_end(bound_client, server, {b"/run/s"}) is server
    assert unix_socket.accepted_end(bound_client, server, set()) is None     # cannot be told


def _entry(fid, ino, stype, state, peer=0, name=b""):
    opts = sk_opts_pb2.sk_opts_entry(so_sndbuf=0, so_rcvbuf=0, so_snd_tmo_sec=0, so_snd_tmo_usec=0,
                                     so_rcv_tmo_sec=0, so_rcv_tmo_usec=0)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.UNIXSK, id=fid, usk=sk_unix_pb2.unix_sk_entry(
        id=fid, ino=ino, type=stype, state=state, flags=2, uflags=0, backlog=0, peer=peer, fown=fown(),
        opts=opts, name=name))


def test_groups_join_peers_listeners_and_their_accepted_connections():
    S, D, EST, LST, CLOSE = 1, 2, 1, 10, 7
    files = {e.id: e for e in (
        _entry(1, 101, S, EST, peer=102), _entry(2, 102, S, EST, peer=101),          # a socketpair
        _entry(3, 201, S, LST, name=b"/run/l"),                                       # a listener
        _entry(4, 202, S, EST, peer=203, name=b"/run/l"), _entry(5, 203, S, EST, peer=202),  # accepted
        _entry(6, 301, D, CLOSE, name=b"\0srv"), _entry(7, 302, D, EST, peer=301),    # dgram to a name
        _entry(8, 401, S, CLOSE))}                                                   # alone
    g = unix_make.groups(files)
    assert g[101] == g[102] and g[201] == g[202] == g[203] and g[301] == g[302]
    assert len({g[101], g[201], g[301], g[401]}) == 4


def test_socket_options_read_and_set_again_on_a_fresh_socket():
    from crpy.resources import sockopts

    with socket.socket(socket.AF_UNIX) as a, socket.socket(socket.AF_UNIX) as b:
        sol = socket.SOL_SOCKET
        for opt, value in ((socket.SO_KEEPALIVE, 1), (socket.SO_REUSEADDR, 1), (socket.SO_PRIORITY, 5),
                           (socket.SO_RCVBUF, 50000), (socket.SO_OOBINLINE, 1)):
            a.setsockopt(sol, opt, value)
        a.setsockopt(sol, socket.SO_LINGER, sockopts.LINGER.pack(1, 9))
        a.setsockopt(sol, socket.SO_SNDTIMEO, sockopts.TIMEVAL.pack(3, 500000))
        e = sockopts.read(a)
        assert e.so_keepalive and e.reuseaddr and e.so_priority == 5 and e.so_linger == 9
        assert e.so_buf_lock == 2 and e.so_rcvbuf == 100000                 # SOCK_RCVBUF_LOCK, doubled
        assert sockopts.read(b) != e
        sockopts.apply(b, e)
        assert sockopts.read(b) == e
        assert sockopts.refused(a) is None
        a.setsockopt(sol, sockopts.SO_TIMESTAMP, 1)
        assert sockopts.refused(a)[0] == "SO_TIMESTAMP set"


def test_a_kernel_without_unix_diag_is_one_line_naming_the_fd():
    from unittest import mock

    import pytest

    from crpy import resources
    from crpy.errors import UnsupportedResource

    resources.configure_dump()
    resources.set_dump_tree([os.getpid()])
    a, b = socket.socketpair()
    try:
        with mock.patch("crpy.kernel.sock_diag.unix_sockets", side_effect=OSError(93, "Protocol not supported")):
            with pytest.raises(UnsupportedResource) as e:
                unix_socket.check_fd(os.getpid(), a.fileno(), os.fstat(a.fileno()))
        assert f"pid {os.getpid()} fd {a.fileno()}" in e.value.one_line() and "unix_diag" in e.value.one_line()
    finally:
        a.close(), b.close()
        resources.configure_dump()


def test_check_fd_reads_a_pairs_queue_without_taking_it():
    from crpy import resources

    resources.configure_dump()
    resources.set_dump_tree([os.getpid()])
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.send(b"one"), a.send(b""), a.send(b"three")
        unix_socket.check_fd(os.getpid(), b.fileno(), os.fstat(b.fileno()))
        opts, peek_off, queue = resources.dump_memo["unix-read"][os.fstat(b.fileno()).st_ino]
        assert [m for m, _ in queue] == [b"one", b"", b"three"] and peek_off == -1
        assert b.recv(10) == b"one" and b.recv(10) == b"" and b.recv(10) == b"three"
    finally:
        a.close(), b.close()
        resources.configure_dump()


def test_a_connected_dgram_socket_whose_peer_closed_is_refused():
    import pytest

    from crpy import resources
    from crpy.errors import UnsupportedResource

    resources.configure_dump()
    resources.set_dump_tree([os.getpid()])
    name = b"\0crpy-test-dgram-peer-closed-%d" % os.getpid()
    srv, c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        srv.bind(name)
        c.connect(name)
        srv.close()
        with pytest.raises(UnsupportedResource, match="whose peer was closed"):
            unix_socket.check_fd(os.getpid(), c.fileno(), os.fstat(c.fileno()))
    finally:
        c.close()
        resources.configure_dump()
