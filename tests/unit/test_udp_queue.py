"""crpy.resources.udp_queue on live sockets of this process: the queue read without consuming it
(0-byte datagrams too), a 0-byte head datagram a task peeked before refused, and datagrams made
whole and sent through a raw socket arriving from their sender's address and port, v4 and v6."""

import socket

import pytest

from crpy.resources import udp_queue


def _pair(family, host):
    r, s = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family, socket.SOCK_DGRAM)
    r.bind((host, 0))
    s.bind((host, 0))
    return r, s


def test_read_walks_the_queue_without_consuming_it():
    r, s = _pair(socket.AF_INET, "127.0.0.1")
    with r, s:
        for d in (b"one", b"", b"three"):
            s.sendto(d, r.getsockname())
        udp_queue._wait_queued(r, 3)          # loopback delivers in a softirq: maybe later; no peek
        got = udp_queue.read(r, 1 << 16)
        assert [(d, a) for d, a in got] == [(d, s.getsockname()) for d in (b"one", b"", b"three")]
        assert r.getsockopt(socket.SOL_SOCKET, udp_queue.SO_PEEK_OFF) == -1, "the task's SO_PEEK_OFF changed"
        assert [r.recv(10, socket.MSG_DONTWAIT) for _ in range(3)] == [b"one", b"", b"three"]


def test_a_zero_byte_head_peeked_before_is_refused():
    r, s = _pair(socket.AF_INET, "127.0.0.1")
    with r, s:
        s.sendto(b"", r.getsockname())
        s.sendto(b"after", r.getsockname())
        udp_queue._wait_queued(r, 2)
        assert r.recv(10, socket.MSG_PEEK) == b""             # the task peeks: the kernel marks it
        with pytest.raises(OSError, match="peeked before"):
            udp_queue.read(r, 1 << 16)


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_requeue_sends_each_datagram_from_its_sender(family, host):
    from crpy.images.pb import sk_packet_pb2

    r, s = _pair(family, host)
    with r, s:
        sender = s.getsockname()
        entries = [(sk_packet_pb2.sk_packet_entry(id_for=1, length=len(d), sender_addr=socket.inet_pton(family, host),
                                                  sender_port=sender[1]), d) for d in (b"a", b"", b"xyz" * 1000)]
        s.close()                                               # the sender is gone: its port is free
        udp_queue.requeue(r, family, r.getsockname(), entries)
        r.settimeout(5)                       # requeue waited for them, but never wait forever
        got = [r.recvfrom(1 << 16) for _ in entries]
        assert [(d, a[:2]) for d, a in got] == [(d, sender[:2]) for _, d in entries]
