"""The datagrams queued on a UDP socket: read at dump without consuming them, queued again at
restore exactly, each from its own sender's address and port.

Dump: MSG_PEEK with SO_PEEK_OFF moving on from 0 walks the queue datagram by datagram (a 0-byte
one too), with recvfrom's sender; the task's SO_PEEK_OFF is put back after.  Each datagram is an
sk-queues.img entry (sk_packet_entry, id_for: the socket's file id; crpy's sender_addr/port)
followed by its bytes.  Refused (by inet_udp): a datagram from a link-local v6 sender (scope),
a connected socket holding one from another sender than its peer (queued before the connect: the
kernel would not take it again), a socket that would tell where each datagram was sent to
(IP_PKTINFO, IP_RECVORIGDSTADDR) while bound to any address, and UDP_GRO (coalesced datagrams).

Restore: the sender's socket may be gone, or held by another process; so the datagram is made
whole, IP and UDP header included, and sent through a raw socket (IP_HDRINCL / IPV6_HDRINCL) to
the restored socket's address, from the sender's address and port, with crpy's mark so that the
network lock lets it in.  A v4 sender of a dual-stack v6 socket comes as IPv4.  The restore waits
until the datagrams are queued (the socket's receive memory settles).
"""

import errno
import socket
import struct
import time

SO_PEEK_OFF = 42
SOCCR_MARK = 0xC114
IPV6_HDRINCL = 36
MAX_DATAGRAMS = 1 << 20
QUEUE_WAIT_S = 5.0


def read(s, bufsize):
    """[(bytes, (host, port, ...))] of the datagrams queued on s, nothing consumed.

    A 0-byte datagram peeked once already (the kernel marks those only, and this walk marks
    them too) is skipped by every later walk with an offset: at the head, where a task peeking
    meets it, a peek without offset after the walk still sees it (OSError: refused); one further
    in the queue cannot be seen by any interface."""
    saved = s.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF)
    out = _walk(s, bufsize, saved)
    s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, -1)
    try:
        head = s.recvfrom(bufsize, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        head = None
    finally:
        s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, saved)
    if head is not None and (not out or out[0] != head):
        raise OSError(errno.EAGAIN, "a 0-byte datagram at the head was peeked before (MSG_PEEK): "
                                    "a walk of the queue skips it")
    return out


def _walk(s, bufsize, saved):
    out = []
    s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
    try:
        while len(out) <= MAX_DATAGRAMS:
            try:
                data, _, flags, sender = s.recvmsg(bufsize, 0, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if flags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "a queued datagram larger than the receive buffer")
            out.append((data, sender))
    finally:
        s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, saved)
    return out


def unmapped(family, host):
    """(family, host) with a v4-mapped v6 address as the v4 one its packets carry."""
    if family == socket.AF_INET6 and host.lower().startswith("::ffff:") and "." in host:
        return socket.AF_INET, host[7:]
    return family, host


def dump_entries(file_id, datagrams, family):
    """sk-queues.img (entry, bytes) pairs of the datagrams."""
    from crpy.images.pb import sk_packet_pb2

    out = []
    for data, sender in datagrams:
        f, host = unmapped(family, sender[0])
        out.append((sk_packet_pb2.sk_packet_entry(id_for=file_id, length=len(data), sender_port=sender[1],
                                                  sender_addr=socket.inet_pton(f, host)), data))
    return out


# ---------------------------------------------------------------- restore side

def queued_for(ctx, file_id):
    """[(sk_packet_entry, bytes)] of the datagrams of file_id in sk-queues.img (crpy's senders)."""
    if "udp-queues" not in ctx.cache:
        import os

        from crpy.images import framing

        path = framing.image_path(ctx.images_dir, "sk_queues")
        q = {}
        if os.path.exists(path):
            for e, data in framing.read_payload_image(path, "sk_queues"):
                if e.HasField("sender_addr"):
                    q.setdefault(e.id_for, []).append((e, bytes(data)))
        ctx.cache["udp-queues"] = q
    return ctx.cache["udp-queues"].get(file_id, [])


def _sum16(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def packet(src, sport, dst, dport, data):
    """The IP packet (v4 if the addresses are 4 bytes, else v6) carrying datagram `data`."""
    length = 8 + len(data)
    if len(src) == 4:
        udp = struct.pack("!HHHH", sport, dport, length, 0) + data      # checksum 0: none, allowed on IPv4
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, socket.IPPROTO_UDP, 0, src, dst)
        return ip + udp
    pseudo = src + dst + struct.pack("!II", length, socket.IPPROTO_UDP)
    csum = 0xFFFF - _sum16(pseudo + struct.pack("!HHHH", sport, dport, length, 0) + data)
    udp = struct.pack("!HHHH", sport, dport, length, csum or 0xFFFF) + data
    ip = struct.pack("!IHBB16s16s", 6 << 28, length, socket.IPPROTO_UDP, 64, src, dst)
    return ip + udp


def requeue(s, family, local, datagrams):
    """Send each (entry, bytes) to the restored socket s, bound to `local` (host, port, ...), from
    its sender; then wait until all are queued (RestoreError-worthy OSError otherwise)."""
    raws = {}
    try:
        for e, data in datagrams:
            v4 = len(e.sender_addr) == 4
            f = socket.AF_INET if v4 else socket.AF_INET6
            host = unmapped(family, local[0])[1]
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if v4 else "::1"
            if f not in raws:
                raws[f] = socket.socket(f, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_RAW)
                raws[f].setsockopt(socket.SOL_SOCKET, socket.SO_MARK, SOCCR_MARK)
                if not v4:
                    raws[f].setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
            dst = socket.inet_pton(f, host)
            raws[f].sendto(packet(e.sender_addr, e.sender_port, dst, local[1], data), (host, 0))
    finally:
        for r in raws.values():
            r.close()
    _wait_queued(s, len(datagrams))


SO_MEMINFO, SK_MEMINFO_RMEM_ALLOC = 55, 0
STABLE_READS = 3


def _wait_queued(s, n):
    """Loopback delivers in softirq, maybe later under load: wait until the receive memory in use
    is non-zero and stays the same a few reads in a row.  Not by peeking: a 0-byte datagram once
    peeked would be skipped by the next dump's walk."""
    deadline, last, same = time.monotonic() + QUEUE_WAIT_S, None, 0
    while same < STABLE_READS:
        rmem = struct.unpack_from("=I", s.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[SK_MEMINFO_RMEM_ALLOC]
        same = same + 1 if rmem and rmem == last else 0
        last = rmem
        if time.monotonic() > deadline:
            raise OSError(errno.EIO, f"the {n} queued datagrams sent again did not all arrive")
        time.sleep(0.002)
