"""Netlink sockets (NETLINK_ROUTE, NETLINK_GENERIC, ...): protocol, bound port id, multicast groups,
connected peer and the SOL_NETLINK options.

Dump.  sock_diag (crpy.kernel.netlink_diag, asked once per dump) gives the type, protocol, state,
port ids, the peer's group and the group bitmap (every group, not only the first 32 that
getsockname shows); crpy's copy of the socket (pidfd_getfd) gives the SOL_SOCKET options
(crpy.resources.sockopts) and the SOL_NETLINK ones (_NL_OPTS, a bit each in crpy's nl_flags).
One files.img entry of type NETLINKSK (netlink_sk_entry, CRIU's field numbers).

Refused at dump, by name: messages waiting to be read (replies or notifications: crpy cannot make
the kernel send them again), a dump callback running (the rest of a multi-part reply is still to
come), options sockopts refuses.

Restore: socket(), options, bind to the same port id (a task that learnt its port id keeps
talking to the same one; the port id of the first socket a task autobinds is its pid, which the
restore gives back), each group joined (NETLINK_ADD_MEMBERSHIP: past the first 32 too), connect
to the peer port id and group.  A port id another socket took since is one error naming it.
"""

import errno
import socket

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CONNECTED = 1
NDIAG_FLAG_CB_RUNNING = 0x1
# SOL_NETLINK boolean options -> their bit in netlink_sk_entry.nl_flags
_NL_OPTS = {3: 0x2,       # NETLINK_PKTINFO
            4: 0x4,       # NETLINK_BROADCAST_ERROR
            5: 0x8,       # NETLINK_NO_ENOBUFS
            8: 0x10,      # NETLINK_LISTEN_ALL_NSID
            10: 0x20,     # NETLINK_CAP_ACK
            11: 0x40,     # NETLINK_EXT_ACK
            12: 0x80}     # NETLINK_GET_STRICT_CHK


def describe(protocol):
    return f"netlink socket (protocol {protocol})"


# ---------------------------------------------------------------- dump side

def _refuse(pid, fd, what, hint):
    from crpy.resources.sockcopy import refuse

    refuse(pid, fd, what, hint)


def check(fdfacts):
    """Read the socket before the parasite, refusing what the restore could not make again."""
    from crpy.errors import CrpyError
    from crpy.kernel import netlink_diag
    from crpy.resources import sockcopy

    pid, fd, ino = fdfacts.pid, fdfacts.fd, fdfacts.st.st_ino
    try:
        d = sockcopy.memo("netlink-diag", netlink_diag.netlink_sockets).get(ino)
    except (OSError, CrpyError) as e:
        _refuse(pid, fd, "netlink socket", f"sock_diag does not answer for netlink sockets ({e}): "
                "is netlink_diag (CONFIG_NETLINK_DIAG) available?")
    if d is None:
        _refuse(pid, fd, "netlink socket that sock_diag does not list", "it lives in another network namespace")
    kind = describe(d.protocol)
    if d.flags & NDIAG_FLAG_CB_RUNNING:
        _refuse(pid, fd, f"{kind} in the middle of a multi-part (dump) reply", "read the reply to its end before the dump")
    sockcopy.keep("netlink", ino, sockcopy.read_copy(pid, fd, lambda s: _read(pid, fd, s, d, kind)))


def _read(pid, fd, s, d, kind):
    from crpy.images.pb import sk_netlink_pb2
    from crpy.resources import sockcopy, sockopts

    bad = sockopts.refused(s)
    if bad is not None:
        _refuse(pid, fd, f"{kind} with {bad[0]}", bad[1])
    if sockcopy.has_queued(s):
        _refuse(pid, fd, f"{kind} with messages queued to read",
                "crpy cannot make the kernel send them again; read them before the dump")
    nl_flags = 0
    for opt, bit in _NL_OPTS.items():
        try:
            if s.getsockopt(SOL_NETLINK, opt):
                nl_flags |= bit
        except OSError as err:
            if err.errno != errno.ENOPROTOOPT:
                raise
    e = sk_netlink_pb2.netlink_sk_entry(id=0, ino=d.ino, protocol=d.protocol, state=d.state, flags=0,
                                        portid=d.portid, dst_portid=d.dst_portid, dst_group=d.dst_group,
                                        opts=sockopts.read(s), nl_flags=nl_flags, sk_type=d.type)
    while d.groups and not d.groups[-1]:
        d.groups.pop()
    e.groups.extend(d.groups)
    return e


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2
    from crpy.resources.sockcopy import kept

    return fdinfo_pb2.file_entry(type=fdinfo_pb2.NETLINKSK, id=file_id, nlsk=kept("netlink", fdfacts, file_id))


# ---------------------------------------------------------------- restore side

def groups_of(words):
    """Group numbers (1-based, as NETLINK_ADD_MEMBERSHIP takes them) of a bitmap of 32-bit words."""
    return [32 * i + b + 1 for i, w in enumerate(words) for b in range(32) if w >> b & 1]


def restore_fd(entry, ctx):
    from crpy.resources.sockcopy import made

    e = entry.nlsk
    s = socket.socket(socket.AF_NETLINK, (e.sk_type or socket.SOCK_RAW) | socket.SOCK_CLOEXEC, e.protocol)
    return made(s, lambda s: _make(s, e), e.flags, lambda err: f"{describe(e.protocol)} id {e.id}: " + (
        f"port id {e.portid} is taken by another socket" if err.errno == errno.EADDRINUSE else str(err)))


def _make(s, e):
    from crpy.resources import sockopts

    sockopts.apply(s, e.opts)
    for opt, bit in _NL_OPTS.items():
        if e.nl_flags & bit:
            s.setsockopt(SOL_NETLINK, opt, 1)
    if e.portid:
        s.bind((e.portid, 0))
    for group in groups_of(e.groups):
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    if e.state == NETLINK_CONNECTED:
        s.connect((e.dst_portid, e.dst_group))
