"""Half-closed TCP connections (FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING), as criu's soccr does them.

A FIN takes a sequence number but is no data.  At the dump the send queue's lengths leave out
our own FIN (SNDQ_FIN states); the receive queue's length leaves it out already (the kernel does).
At the restore the connection is first made ESTABLISHED with both sequence numbers one short of
the FINs, and then each FIN is put back:
  - ours (FIN_WAIT1/2, CLOSING, LAST_ACK): shutdown(SHUT_WR) in repair mode on TCP_SEND_QUEUE,
    so it counts as sent without a packet going out (unacknowledged, the retransmit timer sends
    it again, as it would have);
  - the peer's (CLOSE_WAIT, LAST_ACK, CLOSING): a FIN|ACK segment made to look as if the peer had
    sent it, through a raw socket, once every socket of the tree exists (the kernel answers it);
  - the peer's acknowledgement of ours (FIN_WAIT2): an ACK segment, the same way.
In LAST_ACK the peer's FIN came first, so ours is put back after it (from crpy, on crpy's copy of
the socket).  The made segments carry no TCP options (the kernel takes a segment without a
timestamp on a connection that negotiated them).
"""

import socket
import struct

TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING = 4, 5, 8, 9, 11
HALF_CLOSED = (TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING)
SENT_FIN = (TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING, TCP_LAST_ACK)      # ours is in the send queue
GOT_FIN = (TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING)                      # the peer's was received
FIN_FIRST = (TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING)                    # ours before the peer's
TH_FIN, TH_ACK = 0x01, 0x10
IPPROTO_TCP = 6
TCP_REPAIR_QUEUE, TCP_NO_QUEUE, TCP_SEND_QUEUE = 20, 0, 2


def dump_lengths(state, outq, unsent):
    """(outq_len, unsq_len) without our FIN, which SIOCOUTQ/SIOCOUTQNSD count."""
    if state in SENT_FIN:
        outq = max(outq - 1, 0)
        unsent = max(unsent - 1, 0)
    return outq, unsent


def restore_seqs(state, inq_seq, outq_seq):
    """The sequence numbers the connection is made with before the FINs go back."""
    return inq_seq - (state in GOT_FIN), outq_seq - (state in SENT_FIN)


def window_before_fin(state, rcv_wup, rcv_wnd):
    if state in GOT_FIN:
        return rcv_wup - 1, rcv_wnd + 1
    return rcv_wup, rcv_wnd


def put_fin_in_send_queue(s):
    """Our FIN, counted as sent (repair mode, no packet)."""
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
    s.shutdown(socket.SHUT_WR)
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)


def in_child(s, state):
    """In the restored task, after queues and window: our FIN when it came first."""
    if state in FIN_FIRST:
        put_fin_in_send_queue(s)


def when_all_made(s, isk, e):
    """From crpy, once every socket of the tree exists (still in repair mode): the peer's FIN,
    then ours in LAST_ACK, then the peer's ACK of ours in FIN_WAIT2."""
    state = isk.state
    if state in GOT_FIN:
        _inject(isk, seq=e.inq_seq - 1, ack=e.outq_seq - (state in SENT_FIN) - e.outq_len,   # not ours
                flags=TH_FIN | TH_ACK, window=e.snd_wnd >> e.snd_wscale)
    if state == TCP_LAST_ACK:
        put_fin_in_send_queue(s)
    if state == TCP_FIN_WAIT2:
        _inject(isk, seq=e.inq_seq, ack=e.outq_seq, flags=TH_ACK, window=e.snd_wnd >> e.snd_wscale)


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def segment(src, dst, sport, dport, seq, ack, flags, window, v6):
    """A 20-byte TCP header from src:sport to dst:dport (addresses packed), checksummed."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                      min(window, 0xFFFF), 0, 0)
    pseudo = src + dst + (struct.pack("!IxxxB", len(tcp), IPPROTO_TCP) if v6 else
                          struct.pack("!xBH", IPPROTO_TCP, len(tcp)))
    return tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]


def _inject(isk, seq, ack, flags, window):
    """Send the segment the peer would have sent, from the peer's address to ours."""
    from crpy.resources.inet_tcp import words_addr

    ours, peer = words_addr(isk.family, isk.src_addr), words_addr(isk.family, isk.dst_addr)
    if isk.family == socket.AF_INET6 and ours.startswith("::ffff:") and "." in ours:
        ours, peer, family = ours[7:], peer[7:], socket.AF_INET            # v4-mapped: IPv4 on the wire
    else:
        family = isk.family
    src, dst = socket.inet_pton(family, peer), socket.inet_pton(family, ours)
    tcp = segment(src, dst, isk.dst_port, isk.src_port, seq, ack, flags, window, family == socket.AF_INET6)
    if family == socket.AF_INET:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, IPPROTO_TCP, 0, src, dst)
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), IPPROTO_TCP, 64, src, dst)
    with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        from crpy.netlock import SOCCR_MARK

        raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, SOCCR_MARK)    # through the network lock
        raw.sendto(ip + tcp, (ours, 0))
