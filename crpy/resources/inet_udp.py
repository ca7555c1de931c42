"""Inet datagram sockets: UDP, UDP-Lite, raw and ICMP "ping" sockets, v4, v6 and v4-mapped v6.

Dump.  What the socket is comes from crpy's own copy of it (pidfd_getfd: the same socket, nothing
taken from the task): SO_DOMAIN/SO_TYPE/SO_PROTOCOL, getsockname (bound address and port, a raw
socket's protocol, a ping socket's ident), the peer (getpeername; a raw or ping socket's from
/proc/PID/net/raw|icmp[6], getpeername says ENOTCONN for them), the SOL_SOCKET options
(crpy.resources.sockopts), the IP/IPv6/raw options of ip_opts_entry, and the other integer options
this module lists (_INT_OPTS; crpy's field 1105).  UDP's shutdown bits and corked bytes come from
sock_diag (crpy.kernel.udp_diag); a raw or ping socket's from poll() (RDHUP: reading shut, HUP:
both) and SIOCOUTQ.  One files.img entry of type INETSK (inet_sk_entry, CRIU's field numbers).

Datagrams waiting on a UDP socket are queued again exactly, each from its sender's address and
port (crpy.resources.udp_queue; CRIU does not restore UDP queues).  Refused at dump, by name:
datagrams waiting on a UDP-Lite, raw or ping socket, those udp_queue cannot queue again, bytes
corked and not yet sent (UDP_CORK or MSG_MORE), options sockopts refuses.  Not
visible to any interface crpy has, so not restored: multicast group memberships, and a raw or
ping socket, or an unbound UDP one, shut for writing only (sock_diag has no raw/ping handler
on this kernel and does not list unbound UDP sockets).

Network lock: the tree's bound UDP ports are locked (crpy.netlock) when the dump kills the tree.

Restore: socket(), options (SO_REUSEADDR, IP_FREEBIND, IPV6_V6ONLY before bind), bind to the
address and port, connect to the peer, the queued datagrams (udp_queue), UDP_CORK, shutdown (the kernel records it even on an
unconnected socket, answering ENOTCONN), file status flags.  A port another socket took since is
one error naming it.
"""

import errno
import fcntl
import socket
import struct

AF_INET, AF_INET6 = 2, 10
SOCK_DGRAM, SOCK_RAW = 2, 3
IPPROTO_ICMP, IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_RAW, IPPROTO_UDPLITE = 1, 17, 58, 255, 136
TCP_ESTABLISHED, TCP_CLOSE = 1, 7
SOL_IP, SOL_IPV6, SOL_RAW, SOL_ICMPV6, SOL_UDP, SOL_UDPLITE = 0, 41, 255, 58, 17, 136
SIOCOUTQ = 0x5411
SO_DOMAIN, SO_PROTOCOL, SO_PEEK_OFF = 39, 38, 42
POLLRDHUP = 0x2000
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2



# ip_opts_entry fields: (v4 level, v4 option), (v6 level, v6 option); as CRIU, a v6 socket's tos is
# IPV6_TCLASS, its ttl IPV6_UNICAST_HOPS, its pktinfo IPV6_RECVPKTINFO
_IP_OPTS = {"freebind": ((SOL_IP, 15), (SOL_IP, 15)),
            "tos": ((SOL_IP, 1), (SOL_IPV6, 67)),
            "ttl": ((SOL_IP, 2), (SOL_IPV6, 16)),
            "pktinfo": ((SOL_IP, 8), (SOL_IPV6, 49)),
            "recverr": ((SOL_IP, 11), (SOL_IPV6, 25))}

# other integer options set again when they differ from a fresh socket's: (level, option, name, families)
_INT_OPTS = ((SOL_IP, 10, "IP_MTU_DISCOVER", (AF_INET,)),
             (SOL_IP, 13, "IP_RECVTOS", (AF_INET,)),
             (SOL_IP, 12, "IP_RECVTTL", (AF_INET,)),
             (SOL_IP, 19, "IP_TRANSPARENT", (AF_INET, AF_INET6)),
             (SOL_IP, 20, "IP_RECVORIGDSTADDR", (AF_INET, AF_INET6)),
             (SOL_IPV6, 74, "IPV6_RECVORIGDSTADDR", (AF_INET6,)),
             (SOL_IP, 24, "IP_BIND_ADDRESS_NO_PORT", (AF_INET, AF_INET6)),
             (SOL_IP, 33, "IP_MULTICAST_TTL", (AF_INET,)),
             (SOL_IP, 34, "IP_MULTICAST_LOOP", (AF_INET,)),
             (SOL_IP, 49, "IP_MULTICAST_ALL", (AF_INET,)),
             (SOL_IPV6, 23, "IPV6_MTU_DISCOVER", (AF_INET6,)),
             (SOL_IPV6, 18, "IPV6_MULTICAST_HOPS", (AF_INET6,)),
             (SOL_IPV6, 19, "IPV6_MULTICAST_LOOP", (AF_INET6,)),
             (SOL_IPV6, 66, "IPV6_RECVTCLASS", (AF_INET6,)),
             (SOL_IPV6, 51, "IPV6_RECVHOPLIMIT", (AF_INET6,)),
             (SOL_UDP, 103, "UDP_SEGMENT", "udp"),
             (SOL_UDP, 104, "UDP_GRO", "udp"),
             (SOL_UDP, 101, "UDP_NO_CHECK6_TX", "udp6"),
             (SOL_UDP, 102, "UDP_NO_CHECK6_RX", "udp6"))


def describe(family, stype, proto):
    """'UDP socket', 'raw IPv6 socket (protocol 58)', 'ICMP socket' and the like, for messages."""
    v6 = "v6" if family == AF_INET6 else ""
    if stype == SOCK_RAW:
        return f"raw IP{v6} socket (protocol {proto})"
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return f"ICMP{v6} (ping) socket"
    return ("UDP-Lite" if proto == IPPROTO_UDPLITE else "UDP") + (v6 and "v6") + " socket"


def _is_udp(proto):
    return proto in (IPPROTO_UDP, IPPROTO_UDPLITE)


def _int_opt_applies(families, family, proto):
    if families == "udp":
        return _is_udp(proto)
    if families == "udp6":
        return _is_udp(proto) and family == AF_INET6
    return family in families


# ---------------------------------------------------------------- dump side

def _refuse(pid, fd, what, hint):
    from crpy.resources.sockcopy import refuse

    refuse(pid, fd, what, hint)


def _udp_diag():
    from crpy.kernel import udp_diag
    from crpy.resources.sockcopy import memo

    return memo("udp-diag", udp_diag.udp_sockets)


def check(fdfacts):
    """Read the socket (refusing what the restore could not make again) before the parasite;
    dump_fd writes what was read."""
    from crpy.resources import sockcopy

    pid, fd, ino = fdfacts.pid, fdfacts.fd, fdfacts.st.st_ino
    sockcopy.keep("inet", ino, sockcopy.read_copy(pid, fd, lambda s: _read(pid, fd, s, ino)))
    sockcopy.memo("udp-locked", _lock_udp_ports)


def _lock_udp_ports():
    """The network lock (crpy.netlock) of every UDP port the tree holds, at the first UDP socket
    met, once: while the tree is gone, a datagram sent to it is dropped instead of answered with
    ICMP port unreachable (ECONNREFUSED on the sender's connected socket)."""
    from crpy import netlock
    from crpy.resources.unix_socket import _tree_sockets

    held = _tree_sockets()
    ports = {netlock.Connection(d.family, d.local_addr, d.local_port, proto="udp")
             for ino, d in _udp_diag().items() if ino in held and d.local_port}
    netlock.dump_lock().add_if_killed(sorted(ports, key=lambda c: (c.family, c.local_addr, c.local_port)))
    return True


def _addr_words(family, host):
    """inet_sk_entry's src_addr/dst_addr: the address as 32-bit words in memory order."""
    raw = socket.inet_pton(family, host.split("%")[0])
    return list(struct.unpack(f"={len(raw) // 4}I", raw))


def _read(pid, fd, s, ino):
    from crpy.images.pb import sk_inet_pb2
    from crpy.resources import sockopts

    family, stype, proto = (s.getsockopt(socket.SOL_SOCKET, o) for o in (SO_DOMAIN, socket.SO_TYPE, SO_PROTOCOL))
    kind = describe(family, stype, proto)
    bad = sockopts.refused(s)
    if bad is not None:
        _refuse(pid, fd, f"{kind} with {bad[0]}", bad[1])
    local = s.getsockname()
    peer = _peer(pid, s, family, stype, proto, ino)
    e = sk_inet_pb2.inet_sk_entry(id=0, ino=ino, family=family, type=stype, proto=proto,
                                  state=TCP_ESTABLISHED if peer else TCP_CLOSE,
                                  src_port=local[1] if stype != SOCK_RAW else 0,
                                  dst_port=peer[1] if peer and stype != SOCK_RAW else 0,
                                  flags=0, backlog=0, opts=sockopts.read(s))
    e.src_addr.extend(_addr_words(family, local[0]))
    if peer:
        e.dst_addr.extend(_addr_words(family, peer[0]))
    scope = (local[3] if family == AF_INET6 else 0) or (peer[3] if peer and family == AF_INET6 else 0)
    if scope:
        e.ifname = socket.if_indextoname(scope)
    if family == AF_INET6:
        e.v6only = bool(s.getsockopt(SOL_IPV6, socket.IPV6_V6ONLY))
    _read_ip_opts(s, e, family, stype, proto)
    _check_queues(pid, fd, s, e, kind)
    peek_off = _get(s, socket.SOL_SOCKET, SO_PEEK_OFF)           # UDP only, not raw or ping
    if peek_off is not None:
        e.peek_off = peek_off
    if _is_udp(proto):
        level = SOL_UDPLITE if proto == IPPROTO_UDPLITE else SOL_UDP
        e.udp_cork = bool(s.getsockopt(level, 1))
        if proto == IPPROTO_UDPLITE:
            e.udplite_send_cscov, e.udplite_recv_cscov = s.getsockopt(level, 10), s.getsockopt(level, 11)
    return e


def _get(s, level, opt):
    """getsockopt, or None for an option this socket's protocol does not have."""
    try:
        return s.getsockopt(level, opt)
    except OSError as err:
        if err.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            return None
        raise


def _peer(pid, s, family, stype, proto, ino):
    """The address connected to, or None.  Raw and ping sockets answer ENOTCONN to getpeername
    even when connected (their port is 0): their peer is the line of /proc/PID/net/{raw,icmp}[6]
    of their inode (rem_address, the address words in hex as the kernel holds them)."""
    if _is_udp(proto):
        try:
            return s.getpeername()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
            return None
    table = ("raw" if stype == SOCK_RAW else "icmp") + ("6" if family == AF_INET6 else "")
    with open(f"/proc/{pid}/net/{table}") as f:
        lines = f.read().splitlines()[1:]
    for line in lines:
        cols = line.split()
        if int(cols[9]) != ino:
            continue
        if int(cols[3], 16) != TCP_ESTABLISHED:
            return None
        addr_hex, port_hex = cols[2].split(":")
        words = [int(addr_hex[i:i + 8], 16) for i in range(0, len(addr_hex), 8)]
        host = socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words))
        return (host, int(port_hex, 16)) + ((0, 0) if family == AF_INET6 else ())
    return None


def _read_ip_opts(s, e, family, stype, proto):
    from crpy.images.pb import sk_inet_pb2

    ip = e.ip_opts
    for name, (v4, v6) in _IP_OPTS.items():
        level, opt = v6 if family == AF_INET6 else v4
        value = _get(s, level, opt)
        if value is None:
            continue
        setattr(ip, name, bool(value) if name in ("freebind", "pktinfo", "recverr") else value)
    if stype == SOCK_RAW:
        raw = sk_inet_pb2.ip_opts_raw_entry()
        if family == AF_INET:
            raw.hdrincl, raw.nodefrag = bool(s.getsockopt(SOL_IP, 3)), bool(s.getsockopt(SOL_IP, 22))
            if proto == IPPROTO_ICMP:
                raw.icmpv_filter.extend(struct.unpack("=I", s.getsockopt(SOL_RAW, 1, 4)))
        else:
            raw.hdrincl = bool(s.getsockopt(SOL_IPV6, 36))           # IPV6_HDRINCL
            offset = s.getsockopt(SOL_RAW, 7) if proto != IPPROTO_ICMPV6 else -1   # IPV6_CHECKSUM
            raw.checksum, ip.checksum_offset = offset >= 0, offset
            if proto == IPPROTO_ICMPV6:
                raw.icmpv_filter.extend(struct.unpack("=8I", s.getsockopt(SOL_ICMPV6, 1, 32)))
        ip.raw.CopyFrom(raw)
    for level, opt, name, families in _INT_OPTS:
        value = _get(s, level, opt) if _int_opt_applies(families, family, proto) else None
        if value is not None:
            e.int_opts.add(level=level, name=opt, value=value)


def _check_queues(pid, fd, s, e, kind):
    """Shutdown bits into e, the datagrams queued read (_read_queue); refused: bytes corked."""
    import array
    import select

    from crpy.resources.sockcopy import has_queued

    if has_queued(s):
        _read_queue(pid, fd, s, e, kind)
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(s.fileno(), SIOCOUTQ, buf)
    except OSError as err:
        if err.errno != errno.ENOTTY:     # a ping socket: it sends each datagram whole, never corks
            raise
    if buf[0]:
        _refuse(pid, fd, f"{kind} with {buf[0]} bytes of send memory in use (data corked by UDP_CORK or MSG_MORE)",
                "crpy cannot cork them again; uncork or send them before the dump")
    d = _udp_diag().get(e.ino) if _is_udp(e.proto) else None
    if d is not None:
        shut = d.shutdown
    else:                       # raw, ping, or an unbound UDP socket (not hashed: sock_diag omits it)
        p = select.poll()
        p.register(s.fileno(), select.POLLIN | POLLRDHUP)
        events = dict(p.poll(0)).get(s.fileno(), 0)
        shut = RCV_SHUTDOWN * bool(events & POLLRDHUP) | (SEND_SHUTDOWN * bool(events & select.POLLHUP))
    if shut:
        e.shutdown = shut


def _read_queue(pid, fd, s, e, kind):
    """The datagrams waiting on a UDP socket (crpy.resources.udp_queue), for dump_fd; refused
    where they could not be queued again exactly."""
    from crpy import resources
    from crpy.resources import udp_queue

    if e.proto != IPPROTO_UDP:
        _refuse(pid, fd, f"{kind} with datagrams queued to read",
                "crpy queues again only UDP datagrams; read them before the dump")
    if any(o.level == SOL_UDP and o.name == 104 and o.value for o in e.int_opts):
        _refuse(pid, fd, f"{kind} with UDP_GRO and datagrams queued", "they may be coalesced; read them first")
    wildcard = not any(e.src_addr)
    tells_dst = e.ip_opts.pktinfo or any(o.name in (20, 74) and o.value for o in e.int_opts)
    if wildcard and tells_dst:
        _refuse(pid, fd, f"{kind} bound to any address, with IP_PKTINFO or IP_RECVORIGDSTADDR and datagrams queued",
                "crpy cannot tell to which address each was sent; read them before the dump")
    try:
        datagrams = udp_queue.read(s, 1 << 16)
    except OSError as err:
        _refuse(pid, fd, f"{kind} whose queue cannot be read ({err})", "read it before the dump")
    peer = None
    if e.state == TCP_ESTABLISHED:
        peer = (udp_queue.unmapped(e.family, _sockaddr(e.family, e.dst_addr, e.dst_port, "")[0]), e.dst_port)
    for _, sender in datagrams:
        if e.family == AF_INET6 and sender[3]:
            _refuse(pid, fd, f"{kind} with a datagram queued from the link-local {sender[0]}%{sender[3]}",
                    "read it before the dump")
        if peer is not None and (udp_queue.unmapped(e.family, sender[0]), sender[1]) != peer:
            _refuse(pid, fd, f"connected {kind} with a datagram queued from {sender[0]} port {sender[1]}, not its peer",
                    "it came before the connect; read it before the dump")
    resources.dump_memo.setdefault("udp-queue", {})[e.ino] = datagrams


def dump_fd(fdfacts, file_id, files):
    from crpy import resources
    from crpy.images.pb import fdinfo_pb2
    from crpy.resources import udp_queue
    from crpy.resources.sockcopy import kept

    isk = kept("inet", fdfacts, file_id)
    datagrams = resources.dump_memo.get("udp-queue", {}).get(isk.ino, [])
    for entry, data in udp_queue.dump_entries(file_id, datagrams, isk.family):
        files.payload("sk_queues", entry, data)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.INETSK, id=file_id, isk=isk)


# ---------------------------------------------------------------- restore side

def _sockaddr(family, words, port, ifname):
    raw = struct.pack(f"={len(words)}I", *words)
    host = socket.inet_ntop(family, raw)
    if family == AF_INET:
        return host, port
    return host, port, 0, socket.if_nametoindex(ifname) if ifname else 0


def _is_any(words):
    return not any(words)


def restore_fd(entry, ctx):
    """A new socket made as the one of `entry` was."""
    from crpy.resources.sockcopy import made

    e = entry.isk
    s = socket.socket(e.family, e.type | socket.SOCK_CLOEXEC, e.proto)
    return made(s, lambda s: _make(s, e, ctx, entry.id), e.flags, lambda err: f"{describe(e.family, e.type, e.proto)} id {e.id}: " + (
        f"port {e.src_port} of {_sockaddr(e.family, e.src_addr, 0, e.ifname)[0]} is taken by another socket"
        if err.errno == errno.EADDRINUSE else str(err)))


def _set_if_differs(s, level, opt, value):
    if s.getsockopt(level, opt) != value:
        s.setsockopt(level, opt, value)


def _make(s, e, ctx, file_id):
    from crpy.resources import sockopts, udp_queue

    if e.family == AF_INET6:
        _set_if_differs(s, SOL_IPV6, socket.IPV6_V6ONLY, int(e.v6only))
    sockopts.apply(s, e.opts)
    _apply_ip_opts(s, e)
    bound = not _is_any(e.src_addr) or (e.src_port and e.type != SOCK_RAW)
    if bound:
        s.bind(_sockaddr(e.family, e.src_addr, e.src_port, e.ifname))
    if e.state == TCP_ESTABLISHED:
        s.connect(_sockaddr(e.family, e.dst_addr, e.dst_port, e.ifname))
    datagrams = udp_queue.queued_for(ctx, file_id) if ctx is not None else []
    if datagrams:
        udp_queue.requeue(s, e.family, s.getsockname(), datagrams)
    if e.HasField("peek_off") and e.peek_off != -1:
        s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, e.peek_off)
    if _is_udp(e.proto):
        level = SOL_UDPLITE if e.proto == IPPROTO_UDPLITE else SOL_UDP
        if e.proto == IPPROTO_UDPLITE:
            _set_if_differs(s, level, 10, e.udplite_send_cscov)
            _set_if_differs(s, level, 11, e.udplite_recv_cscov)
        if e.udp_cork:
            s.setsockopt(level, 1, 1)
    if e.shutdown:
        try:
            s.shutdown(e.shutdown - 1)                 # SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2
        except OSError as err:
            if err.errno != errno.ENOTCONN:            # recorded anyway on an unconnected socket
                raise


def _apply_ip_opts(s, e):
    ip = e.ip_opts
    for name, (v4, v6) in _IP_OPTS.items():
        if ip.HasField(name):
            level, opt = v6 if e.family == AF_INET6 else v4
            _set_if_differs(s, level, opt, int(getattr(ip, name)))
    if ip.HasField("raw"):
        raw = ip.raw
        if e.family == AF_INET:
            _set_if_differs(s, SOL_IP, 3, int(raw.hdrincl))
            _set_if_differs(s, SOL_IP, 22, int(raw.nodefrag))
            if raw.icmpv_filter:
                s.setsockopt(SOL_RAW, 1, struct.pack("=I", *raw.icmpv_filter))
        else:
            _set_if_differs(s, SOL_IPV6, 36, int(raw.hdrincl))
            if e.proto != IPPROTO_ICMPV6 and ip.HasField("checksum_offset"):
                _set_if_differs(s, SOL_RAW, 7, ip.checksum_offset)
            if raw.icmpv_filter:
                s.setsockopt(SOL_ICMPV6, 1, struct.pack("=8I", *raw.icmpv_filter))
    for o in e.int_opts:
        _set_if_differs(s, o.level, o.name, o.value)
