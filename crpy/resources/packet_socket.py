"""Packet sockets (AF_PACKET, SOCK_RAW and SOCK_DGRAM): bound interface and protocol, TPACKET
version, reserve, copy threshold, timestamp source, AUXDATA/ORIGDEV/VNET_HDR/LOSS, QDISC_BYPASS,
IGNORE_OUTGOING, multicast list and fanout group.

Dump.  sock_diag (crpy.kernel.packet_diag, asked once per dump) gives the interface, protocol,
version, options, multicast list, rings and fanout; crpy's copy of the socket (pidfd_getfd) the
SOL_SOCKET options and the options sock_diag does not show.  One files.img entry of type
PACKETSK (packet_sock_entry, CRIU's field numbers; a multicast entry added n times is listed n
times, as PACKET_ADD_MEMBERSHIP counts).

Refused at dump, by name: rx/tx rings (their memory is mapped into the task: crpy does not make
them again), packets waiting to be read, a fanout group steered by a BPF program (the program
cannot be read back), a socket bound to an interface gone since (not running), a virtio-net
header size other than the one PACKET_VNET_HDR gives.

Restore: socket() with protocol 0, options, bind to the interface and protocol (a socket on every
interface: made with its protocol instead, which is what bind to interface 0 does), multicast
entries, then the fanout group (joined again with its id, type and flags: the other members of
the tree join the same group).
"""

import errno
import socket
import struct

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_AUXDATA, PACKET_ORIGDEV, PACKET_VERSION = 1, 8, 9, 10
PACKET_RESERVE, PACKET_LOSS, PACKET_VNET_HDR, PACKET_TIMESTAMP, PACKET_FANOUT = 12, 14, 15, 17, 18
PACKET_COPY_THRESH, PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING, PACKET_VNET_HDR_SZ = 7, 20, 23, 24
PACKET_FANOUT_CBPF, PACKET_FANOUT_EBPF = 6, 7
PDI_RUNNING, PDI_AUXDATA, PDI_ORIGDEV, PDI_VNETHDR, PDI_LOSS = 0x1, 0x2, 0x4, 0x8, 0x10
VNET_HDR_LEN = 10                      # sizeof(struct virtio_net_hdr): what PACKET_VNET_HDR sets
MREQ = struct.Struct("=iHH8s")          # packet_mreq: ifindex, type, alen, address
NO_FANOUT = 0xFFFFFFFF


def describe(stype):
    return "packet socket" + (" (SOCK_DGRAM)" if stype == socket.SOCK_DGRAM else "")


# ---------------------------------------------------------------- dump side

def check(fdfacts):
    """Read the socket before the parasite, refusing what the restore could not make again."""
    from crpy.errors import CrpyError
    from crpy.kernel import packet_diag
    from crpy.resources import sockcopy

    pid, fd, ino = fdfacts.pid, fdfacts.fd, fdfacts.st.st_ino
    try:
        d = sockcopy.memo("packet-diag", packet_diag.packet_sockets).get(ino)
    except (OSError, CrpyError) as e:
        sockcopy.refuse(pid, fd, "packet socket", f"sock_diag does not answer for packet sockets ({e}): "
                        "is packet_diag (CONFIG_PACKET_DIAG) available?")
    if d is None:
        sockcopy.refuse(pid, fd, "packet socket that sock_diag does not list", "it lives in another network namespace")
    kind = describe(d.type)
    for name, ring in (("an rx ring (PACKET_RX_RING)", d.rx_ring), ("a tx ring (PACKET_TX_RING)", d.tx_ring)):
        if ring is not None:
            sockcopy.refuse(pid, fd, f"{kind} with {name}", "crpy does not restore packet rings; use recv() instead")
    if d.protocol and d.ifindex and not d.flags & PDI_RUNNING:
        sockcopy.refuse(pid, fd, f"{kind} bound to interface {d.ifindex}, which is down or gone",
                        "crpy cannot bind it there again")
    sockcopy.keep("packet", ino, sockcopy.read_copy(pid, fd, lambda s: _read(pid, fd, s, d, kind)))


def _read(pid, fd, s, d, kind):
    from crpy.images.pb import packet_sock_pb2
    from crpy.resources import sockcopy, sockopts

    bad = sockopts.refused(s)
    if bad is not None:
        sockcopy.refuse(pid, fd, f"{kind} with {bad[0]}", bad[1])
    if sockcopy.has_queued(s):
        sockcopy.refuse(pid, fd, f"{kind} with packets queued to read", "crpy cannot queue them again; read them first")
    fanout = s.getsockopt(SOL_PACKET, PACKET_FANOUT) if d.fanout is not None else None
    if fanout is not None and (fanout >> 16 & 0xFF) in (PACKET_FANOUT_CBPF, PACKET_FANOUT_EBPF):
        sockcopy.refuse(pid, fd, f"{kind} in a fanout group steered by a BPF program", "crpy cannot read the program back")
    hdr_sz = _get(s, PACKET_VNET_HDR_SZ)
    if hdr_sz not in (None, 0, VNET_HDR_LEN):
        sockcopy.refuse(pid, fd, f"{kind} with a {hdr_sz}-byte virtio-net header (PACKET_VNET_HDR_SZ)",
                        "crpy restores only PACKET_VNET_HDR's 10 bytes")
    e = packet_sock_pb2.packet_sock_entry(
        id=0, type=d.type, protocol=d.protocol, flags=0, ifindex=d.ifindex, opts=sockopts.read(s),
        version=d.version, reserve=d.reserve, aux_data=bool(d.flags & PDI_AUXDATA),
        orig_dev=bool(d.flags & PDI_ORIGDEV), vnet_hdr=bool(d.flags & PDI_VNETHDR), loss=bool(d.flags & PDI_LOSS),
        timestamp=d.tstamp, copy_thresh=d.copy_thresh,
        qdisc_bypass=bool(_get(s, PACKET_QDISC_BYPASS)), ignore_outgoing=bool(_get(s, PACKET_IGNORE_OUTGOING)))
    for index, count, mtype, addr in d.mclist:
        for _ in range(count):
            e.mclist.add(index=index, type=mtype, addr=addr)
    if fanout is not None:
        e.fanout = fanout
    return e


def _get(s, opt):
    try:
        return s.getsockopt(SOL_PACKET, opt)
    except OSError as err:
        if err.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            return None
        raise


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2
    from crpy.resources.sockcopy import kept

    return fdinfo_pb2.file_entry(type=fdinfo_pb2.PACKETSK, id=file_id, psk=kept("packet", fdfacts, file_id))


# ---------------------------------------------------------------- restore side

def restore_fd(entry, ctx):
    from crpy.resources.sockcopy import made

    e = entry.psk
    on_every_interface = not e.ifindex
    s = socket.socket(socket.AF_PACKET, e.type | socket.SOCK_CLOEXEC,
                      socket.htons(e.protocol) if on_every_interface else 0)
    return made(s, lambda s: _make(s, e), e.flags,
                lambda err: f"{describe(e.type)} id {e.id} (interface {e.ifindex}, protocol {e.protocol:#06x}): {err}")


def _make(s, e):
    from crpy.resources import sockopts

    sockopts.apply(s, e.opts)
    for opt, value in ((PACKET_VERSION, e.version), (PACKET_RESERVE, e.reserve), (PACKET_AUXDATA, int(e.aux_data)),
                       (PACKET_ORIGDEV, int(e.orig_dev)), (PACKET_VNET_HDR, int(e.vnet_hdr)), (PACKET_LOSS, int(e.loss)),
                       (PACKET_TIMESTAMP, e.timestamp), (PACKET_COPY_THRESH, e.copy_thresh),
                       (PACKET_QDISC_BYPASS, int(e.qdisc_bypass)), (PACKET_IGNORE_OUTGOING, int(e.ignore_outgoing))):
        if value:
            s.setsockopt(SOL_PACKET, opt, value)
    if e.ifindex:
        s.bind((socket.if_indextoname(e.ifindex), e.protocol))
    for mc in e.mclist:
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, MREQ.pack(mc.index, mc.type, len(mc.addr), mc.addr[:8]))
    if e.HasField("fanout") and e.fanout != NO_FANOUT:
        s.setsockopt(SOL_PACKET, PACKET_FANOUT, e.fanout)
