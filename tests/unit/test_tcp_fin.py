"""crpy.resources.tcp_fin: the sequence arithmetic of half-closed connections (each FIN takes one
sequence number, no data) and the segments it makes in the peer's name."""

import socket
import struct

from crpy.resources import tcp_fin


def test_made_tcp_segment_checksums():
    """The segments crpy.resources.tcp_fin makes (a peer's FIN or ACK) carry a valid checksum:
    summed with their pseudo-header they come to 0xFFFF, for IPv4 and IPv6."""
    for family, a, b in ((socket.AF_INET, "127.0.0.1", "10.1.2.3"), (socket.AF_INET6, "::1", "2001:db8::7")):
        src, dst = socket.inet_pton(family, a), socket.inet_pton(family, b)
        v6 = family == socket.AF_INET6
        seg = tcp_fin.segment(src, dst, 40558, 8080, 0xFFFFFFFF + 5, 12345, tcp_fin.TH_FIN | tcp_fin.TH_ACK, 70000, v6)
        sport, dport, seq, ack, off, flags, window = struct.unpack_from("!HHIIBBH", seg)
        assert (len(seg), sport, dport, seq, ack, off, flags, window) == (20, 40558, 8080, 4, 12345, 0x50, 0x11, 0xFFFF)
        pseudo = src + dst + (struct.pack("!IxxxB", 20, 6) if v6 else struct.pack("!xBH", 6, 20))
        assert tcp_fin._checksum(pseudo + seg) == 0


def test_fin_sequence_arithmetic():
    # our FIN: left out of the send queue lengths, and of the sequence the connection is made with
    assert tcp_fin.dump_lengths(tcp_fin.TCP_FIN_WAIT1, 101, 51) == (100, 50)
    assert tcp_fin.dump_lengths(tcp_fin.TCP_FIN_WAIT2, 0, 0) == (0, 0)        # acknowledged already
    assert tcp_fin.dump_lengths(tcp_fin.TCP_CLOSE_WAIT, 7, 3) == (7, 3)       # no FIN of ours
    assert tcp_fin.restore_seqs(tcp_fin.TCP_CLOSE_WAIT, 1000, 2000) == (999, 2000)
    assert tcp_fin.restore_seqs(tcp_fin.TCP_FIN_WAIT2, 1000, 2000) == (1000, 1999)
    assert tcp_fin.restore_seqs(tcp_fin.TCP_LAST_ACK, 1000, 2000) == (999, 1999)
    assert tcp_fin.restore_seqs(1, 1000, 2000) == (1000, 2000)              # ESTABLISHED
    assert tcp_fin.window_before_fin(tcp_fin.TCP_CLOSING, 1000, 500) == (999, 501)
