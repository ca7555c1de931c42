"""TCP sockets (fd type INETSK, CRIU's inet_sk_entry): listening, bound, unconnected and established.

Dump (check_fd, before the parasite; the task untouched when it refuses).  crpy takes its own
copy of the socket (pidfd_getfd: the same socket) and reads its family, TCP state (TCP_INFO),
names, and options: SOL_SOCKET ones (crpy.resources.sockopts, with TCP_KEEPIDLE/INTVL/CNT in
CRIU's sk_opts fields), TCP_NODELAY, TCP_CORK, TCP_USER_TIMEOUT, TCP_CONGESTION, TCP_MAXSEG,
IPV6_V6ONLY, IP_FREEBIND, IP_TOS and IP_TTL.  A listening socket's backlog and the connections
waiting in it come from INET_DIAG (crpy.kernel.inet_diag): connections not yet accepted are
refused by name, or dropped with --skip-in-flight (criu's).  An established connection is
refused without --tcp-established (criu's); with it, its stream (sequence numbers, queues,
window, options) is read in repair mode by crpy.resources.tcp_stream, half-closed ones too
(FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING: crpy.resources.tcp_fin).  With --tcp-close
(criu's, winning over --tcp-established) a connection is accepted but its stream is not read,
nor locked: only its socket (names, options) is saved, the inventory says so, and the restore
wants --tcp-close (it comes back closed; its peer sees it close when the dump kills the tree).
SYN_SENT and the rest are refused by name (see check_state).

Restore (restore_fd): a socket of the same family, its options set on the fresh socket; bound
with SO_REUSEADDR for the moment (an accepted connection of the tree shares its listener's
port), then the saved SO_REUSEADDR; listening again with its backlog.  A port another process
holds is one line naming address:port and that process's pid and fd.  Established connections:
crpy.resources.tcp_stream (in repair mode, no packet sent), or closed with --tcp-close.
"""

import fcntl
import os
import socket
import struct

IPPROTO_TCP = 6
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10
TCP_NODELAY, TCP_MAXSEG, TCP_CORK = 1, 2, 3
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 4, 5, 6
TCP_CONGESTION, TCP_USER_TIMEOUT = 13, 18
IP_TOS, IP_TTL, IP_FREEBIND, IPV6_FREEBIND = 1, 2, 15, 78
_KEEPALIVE = {"tcp_keepidle": TCP_KEEPIDLE, "tcp_keepintvl": TCP_KEEPINTVL, "tcp_keepcnt": TCP_KEEPCNT}
O_CLOEXEC = 0o2000000

_restore_policy = {"tcp_close": False}


def configure_restore(tcp_close=False):
    """criu's restore --tcp-close: established connections come back closed."""
    _restore_policy["tcp_close"] = tcp_close


def connected(state):
    """ESTABLISHED or half-closed: a connection crpy saves through repair mode."""
    from crpy.resources.tcp_fin import HALF_CLOSED

    return state == TCP_ESTABLISHED or state in HALF_CLOSED


def restored_closed():
    return _restore_policy["tcp_close"]


# ---------------------------------------------------------------- names and addresses

def state_name(state):
    from crpy.kernel.inet_diag import TCP_STATES

    return TCP_STATES.get(state, str(state))


def endpoint(family, addr, port):
    """'127.0.0.1:80' or '[::1]:80'."""
    return f"[{addr}]:{port}" if family == socket.AF_INET6 else f"{addr}:{port}"


def addr_words(family, addr):
    """The address as CRIU stores it: its network-order bytes read as host u32 words."""
    raw = socket.inet_pton(family, addr)
    return list(struct.unpack(f"={len(raw) // 4}I", raw))


def words_addr(family, words):
    raw = struct.pack(f"={len(words)}I", *words) if words else bytes(4 if family == socket.AF_INET else 16)
    return socket.inet_ntop(family, raw)


def describe(e):
    """'TCP socket 127.0.0.1:80 -> 127.0.0.1:5000' for messages, from an inet_sk_entry."""
    src = endpoint(e.family, words_addr(e.family, e.src_addr), e.src_port)
    if e.state in (TCP_LISTEN, TCP_CLOSE) or not e.dst_port:
        return f"TCP socket {src}"
    return f"TCP socket {src} -> {endpoint(e.family, words_addr(e.family, e.dst_addr), e.dst_port)}"


# ---------------------------------------------------------------- dump side

def _refuse(pid, fd, what, hint):
    from crpy.errors import UnsupportedResource

    raise UnsupportedResource(pid, what, fd, None, hint)


def _diag(family, ino, state):
    """INET_DIAG's view of socket `ino` in `state` (a listener's backlog and waiting connections,
    the destination of a connect() under way), or None.  Asked once per dump, family and state."""
    from crpy import resources
    from crpy.kernel import inet_diag

    key = ("tcp-diag", family, state)
    if key not in resources.dump_memo:
        resources.dump_memo[key] = inet_diag.inet_sockets(family, IPPROTO_TCP, states=1 << state)
    return resources.dump_memo[key].get(ino)


def check_fd(pid, fd, st):
    """Read TCP socket pid/fd (kept for dump_fd), or UnsupportedResource before the parasite."""
    from crpy import resources
    from crpy.images.pb import sk_inet_pb2
    from crpy.resources import taskfd

    if st.st_ino in resources.dump_memo.get("tcp", {}):
        return                        # a socket another task (or fd) of the tree holds: read once

    s = socket.socket(fileno=taskfd.duplicate(pid, fd))
    try:
        e = sk_inet_pb2.inet_sk_entry(id=0, ino=st.st_ino, family=s.family, type=s.type, proto=IPPROTO_TCP,
                                      state=s.getsockopt(IPPROTO_TCP, socket.TCP_INFO, 8)[0],
                                      src_port=0, dst_port=0, flags=0, backlog=0)
        _read_names(pid, fd, s, e)
        what = describe(e)
        check_state(pid, fd, e, what, s)
        from crpy.resources import sockcopy

        sockcopy.memo("tcp-locked", _lock_tree_connections)
        refused = _sockopts().refused(s)
        if refused:
            _refuse(pid, fd, f"{what} with {refused[0]}", refused[1])
        e.opts.CopyFrom(_read_opts(s))
        _read_ip_opts(s, e)
        e.crpy_tcp_opts.CopyFrom(_read_tcp_opts(s, e.state))
        stream = None
        if connected(e.state) and not resources.allowed("tcp_close"):
            from crpy.resources import tcp_stream

            stream = tcp_stream.read(pid, fd, s, what, e.opts.reuseaddr, e.state)
    finally:
        s.close()
    resources.dump_memo.setdefault("tcp", {})[st.st_ino] = (e, stream)


def _lock_tree_connections():
    """Take the network lock (crpy.netlock) of every TCP socket of the tree at once, at the first
    met, before any is read in repair mode: while the tree is frozen or gone its peers' packets are
    dropped (and retransmitted once the restored tree runs) instead of drawing a RST.  Listeners
    are locked only when the dump kills the tree: a connect() then waits for the restore instead
    of being refused.  One firewall call for all, however many connections."""
    from crpy import netlock, resources
    from crpy.kernel import inet_diag
    from crpy.resources.unix_socket import _tree_sockets

    held = _tree_sockets()
    conns, listeners = [], []
    for family in (socket.AF_INET, socket.AF_INET6):
        for ino, d in inet_diag.inet_sockets(family, IPPROTO_TCP).items():
            if ino not in held:
                continue
            if connected(d.state) and not resources.allowed("tcp_close"):   # closed anyway: not locked
                conns.append(netlock.Connection(d.family, d.src, d.sport, d.dst, d.dport))
            elif d.state == TCP_LISTEN:
                listeners.append(netlock.Connection(d.family, d.src, d.sport))
    lock = netlock.dump_lock()
    lock.add(conns)
    lock.add_if_killed(listeners)
    return True


def check_state(pid, fd, e, what, s):
    """Refuse the states crpy does not restore exactly; note a listener's backlog."""
    from crpy import resources

    if e.state == TCP_LISTEN:
        d = _diag(e.family, e.ino, TCP_LISTEN)
        if d is None:
            _refuse(pid, fd, f"listening {what} that sock_diag does not list",
                    "it lives in another network namespace, or inet_diag/tcp_diag is missing")
        e.backlog = d.wqueue
        if d.rqueue and not resources.allowed("skip_in_flight"):
            _refuse(pid, fd, f"listening {what} with {d.rqueue} connection(s) waiting in its backlog, not accepted",
                    "accept them before the dump, or dump with --skip-in-flight to drop them")
    elif connected(e.state):
        if not resources.allowed("tcp_established") and not resources.allowed("tcp_close"):
            _refuse(pid, fd, f"established {what}" + (f" ({state_name(e.state)})" if e.state != TCP_ESTABLISHED else ""),
                    "dump with --tcp-established to save the connection (TCP repair mode), "
                    "or with --tcp-close to restore it closed")
    elif e.state != TCP_CLOSE:
        d = _diag(e.family, e.ino, e.state)
        if d is not None and d.dport:             # not connected yet: getpeername() knows nothing
            what += f" -> {endpoint(e.family, d.dst, d.dport)}"
        _refuse(pid, fd, f"{what} in state {state_name(e.state)}",
                "crpy restores listening, closed, established and half-closed TCP sockets; let the "
                "connection be made (or close it) before the dump")


def _read_names(pid, fd, s, e):
    src = s.getsockname()
    e.src_addr[:] = addr_words(e.family, src[0])
    e.src_port = src[1]
    try:
        dst = s.getpeername()
    except OSError:
        dst = ("0.0.0.0", 0) if e.family == socket.AF_INET else ("::", 0, 0, 0)
    e.dst_addr[:] = addr_words(e.family, dst[0])
    e.dst_port = dst[1]
    if e.family == socket.AF_INET6:
        e.v6only = bool(s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
        if src[3] or dst[3]:
            _refuse(pid, fd, f"TCP socket on a link-local IPv6 address (scope {src[3] or dst[3]})",
                    "crpy keeps global and loopback IPv6 addresses")


def _sockopts():
    from crpy.resources import sockopts

    return sockopts


def _read_opts(s):
    e = _sockopts().read(s)
    if e.so_keepalive:
        for name, opt in _KEEPALIVE.items():
            setattr(e, name, s.getsockopt(IPPROTO_TCP, opt))
    return e


def _read_ip_opts(s, e):
    if e.family == socket.AF_INET:
        e.ip_opts.freebind = bool(s.getsockopt(socket.IPPROTO_IP, IP_FREEBIND))
        e.ip_opts.tos = s.getsockopt(socket.IPPROTO_IP, IP_TOS)
        e.ip_opts.ttl = s.getsockopt(socket.IPPROTO_IP, IP_TTL)
    else:
        e.ip_opts.freebind = bool(s.getsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND))


def _read_tcp_opts(s, state):
    from crpy.images.pb import sk_inet_pb2

    o = sk_inet_pb2.crpy_tcp_opts_entry(
        nodelay=bool(s.getsockopt(IPPROTO_TCP, TCP_NODELAY)), cork=bool(s.getsockopt(IPPROTO_TCP, TCP_CORK)),
        user_timeout=s.getsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT),
        congestion=s.getsockopt(IPPROTO_TCP, TCP_CONGESTION, 16).split(b"\0")[0].decode())
    if state in (TCP_LISTEN, TCP_CLOSE):       # what the task set (user_mss); connected: the clamp
        with socket.socket(s.family, socket.SOCK_STREAM) as fresh:
            mss = s.getsockopt(IPPROTO_TCP, TCP_MAXSEG)
            if mss != fresh.getsockopt(IPPROTO_TCP, TCP_MAXSEG):
                o.maxseg = mss
    return o


def dump_fd(fdfacts, file_id, files):
    from crpy import resources
    from crpy.images.pb import fdinfo_pb2
    from crpy.resources.regfile import fown

    e, stream = resources.dump_memo["tcp"][fdfacts.st.st_ino]
    e.id = file_id
    e.flags = fdfacts.info.flags & ~O_CLOEXEC
    e.fown.CopyFrom(fown())
    if stream is not None:
        from crpy.resources import tcp_stream

        tcp_stream.write(files.images_dir, e.ino, stream)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.INETSK, id=file_id, isk=e)


# ---------------------------------------------------------------- restore side

def restore_fd(entry, ctx):
    """A new TCP socket as entry.isk describes it."""
    from crpy.errors import RestoreError

    e = entry.isk
    s = socket.socket(e.family, socket.SOCK_STREAM, IPPROTO_TCP)
    try:
        if e.family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(e.v6only))
        _sockopts().apply(s, e.opts)
        _apply_ip_opts(s, e)
        if connected(e.state) and not _restore_policy["tcp_close"]:
            from crpy.resources import tcp_stream

            tcp_stream.restore(s, e, ctx.images_dir)
        elif e.state in (TCP_LISTEN, TCP_CLOSE) and e.src_port:
            _bind(s, e)
            if e.state == TCP_LISTEN:
                s.listen(e.backlog)
        _apply_tcp_opts(s, e)
    except OSError as err:
        s.close()
        raise RestoreError(f"cannot make {describe(e)} again: {err.strerror or err}") from None
    except BaseException:
        s.close()
        raise
    fcntl.fcntl(s.fileno(), fcntl.F_SETFL, e.flags & os.O_NONBLOCK)
    return s.detach()


def _bind(s, e):
    """Bind to the saved name; SO_REUSEADDR for the moment (an accepted connection of the tree,
    restored already, holds the listener's port), then as the task had it."""
    import errno

    from crpy.errors import RestoreError

    addr = words_addr(e.family, e.src_addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr, e.src_port))
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        raise RestoreError(f"cannot bind TCP socket to {endpoint(e.family, addr, e.src_port)}: the port is taken"
                           f"{port_holder(e.family, e.src_port)}",
                           "stop that process (or free the port), then restore") from None
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(e.opts.reuseaddr))


def port_holder(family, port):
    """' by pid P fd F' of a listening TCP socket on `port` (either family), or ''."""
    from crpy.kernel import inet_diag

    inos = set()
    for fam in {family, socket.AF_INET, socket.AF_INET6}:
        try:
            inos |= {d.ino for d in inet_diag.inet_sockets(fam, IPPROTO_TCP).values()
                     if d.sport == port and d.state in (TCP_LISTEN, TCP_ESTABLISHED)}
        except OSError:
            continue
    targets = {f"socket:[{ino}]" for ino in inos if ino}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return f" by pid {pid} fd {fd}"
        except OSError:
            continue
    return ""


def _apply_ip_opts(s, e):
    if not e.HasField("ip_opts"):
        return
    o = e.ip_opts
    if e.family == socket.AF_INET:
        for name, opt in (("freebind", IP_FREEBIND), ("tos", IP_TOS), ("ttl", IP_TTL)):
            if o.HasField(name) and s.getsockopt(socket.IPPROTO_IP, opt) != int(getattr(o, name)):
                s.setsockopt(socket.IPPROTO_IP, opt, int(getattr(o, name)))
    elif o.freebind:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)


def _apply_tcp_opts(s, e):
    for name, opt in _KEEPALIVE.items():
        if e.opts.HasField(name) and s.getsockopt(IPPROTO_TCP, opt) != getattr(e.opts, name):
            s.setsockopt(IPPROTO_TCP, opt, getattr(e.opts, name))
    if not e.HasField("crpy_tcp_opts"):
        return
    o = e.crpy_tcp_opts
    if o.congestion and s.getsockopt(IPPROTO_TCP, TCP_CONGESTION, 16).split(b"\0")[0].decode() != o.congestion:
        s.setsockopt(IPPROTO_TCP, TCP_CONGESTION, o.congestion.encode())
    if o.HasField("maxseg"):
        s.setsockopt(IPPROTO_TCP, TCP_MAXSEG, o.maxseg)
    for name, opt in (("user_timeout", TCP_USER_TIMEOUT), ("nodelay", TCP_NODELAY), ("cork", TCP_CORK)):
        if o.HasField(name) and s.getsockopt(IPPROTO_TCP, opt) != int(getattr(o, name)):
            s.setsockopt(IPPROTO_TCP, opt, int(getattr(o, name)))
