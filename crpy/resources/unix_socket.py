"""Unix sockets: dump and restore of stream, dgram and seqpacket sockets, with their queued data.

Dump.  What a socket is comes from the kernel's sock_diag (crpy.kernel.sock_diag, asked once per
dump): type, state, name, peer, listen backlog, queue lengths and shutdown bits; its options and
its queue from crpy's own copy of the socket (pidfd_getfd: the same socket, so nothing is taken
from the task): SO_PEEK_OFF is set to 0 for the moment and MSG_PEEK walks the queue message by
message (dgram and seqpacket boundaries kept), then the task's SO_PEEK_OFF is put back.  Each
socket is one files.img entry of type UNIXSK (unix_sk_entry, CRIU's layout: peer is the peer's
inode), its queue one sk-queues.img entry per message (id_for: the receiving socket's file id)
followed by the bytes, as CRIU writes them.

Everything a restore could not make again is refused before the parasite (check_fd): a peer no
task of the tree holds, a connection not yet accepted or waiting in a listening socket's
backlog, fds in flight (SCM_RIGHTS), queued credentials (SO_PASSCRED), a relative name, an
accepted connection (a named end of a stream pair), datagrams from a named sender that is not
the receiver's peer, an attached socket filter, SO_PASSPIDFD.

Restore.  The sockets connected to each other (by peer, or a dgram socket to the named socket it
sends to) are one group, made at once by whoever restores the first of them (the root before its
first fork when several tasks hold them, crpy.resources.shared): named sockets are bound first
(a stale socket file is removed only when it is the very inode that was dumped), listening ones
listen with their backlog; mutual pairs come from socketpair(); a pair whose other end was
closed is a socketpair whose other end is closed after its data went in; a one-way connected
dgram socket connects to its peer's name.  Then options, then the queued data, sent on each
socket's peer (or, for an unconnected receiver, from a fresh unnamed socket to its name) in
order, then the shutdown bits.
"""

import fcntl
import os
import socket
import struct

O_CLOEXEC = 0o2000000
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
TYPE_NAMES = {SOCK_STREAM: "stream", SOCK_DGRAM: "dgram", SOCK_SEQPACKET: "seqpacket"}
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10
RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
SO_PASSCRED, SO_PEEK_OFF, SO_PASSSEC, SO_GET_FILTER, SO_PASSPIDFD = 16, 42, 34, 26, 76
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
_TIMEVAL = struct.Struct("=qq")
MAX_MESSAGES = 1 << 20                    # a queue walk that never ends is a bug: stop it
_SETFL = os.O_NONBLOCK | 0o20000          # O_NONBLOCK, O_ASYNC (fown sets O_ASYNC again itself)


def describe(d):
    """'unix stream socket' and the like, for messages."""
    return f"unix {TYPE_NAMES.get(d.type, str(d.type))} socket"


# ---------------------------------------------------------------- dump side

def _diag():
    from crpy import resources
    from crpy.kernel import sock_diag

    memo = resources.dump_memo
    if "unix-diag" not in memo:
        memo["unix-diag"] = sock_diag.unix_sockets()
    return memo["unix-diag"]


def _tree_sockets():
    """{socket inode: (pid, fd)} of every socket fd of the dumped tree (found once per dump)."""
    from crpy import resources
    from crpy.errors import CrpyError
    from crpy.kernel import proc

    memo = resources.dump_memo
    if "unix-holders" not in memo:
        held = {}
        for pid in resources.tree_pids:
            try:
                for fd in proc.fds(pid):
                    target = proc.fd_target(pid, fd)
                    if target.startswith("socket:["):
                        held.setdefault(int(target[8:-1]), (pid, fd))
            except (OSError, CrpyError):
                continue                      # a task gone or without a readable fd table
        memo["unix-holders"] = held
    return memo["unix-holders"]


def socket_kind(pid, fd):
    """'unixsk' for a unix socket, else '<PROTO> socket' (the kernel's protocol name) for messages."""
    try:
        proto = os.getxattr(f"/proc/{pid}/fd/{fd}", "system.sockprotoname").decode().rstrip("\0")
    except OSError:
        proto = "unknown"
    return "unixsk" if proto.startswith("UNIX") else f"{proto} socket"


def _refuse(pid, fd, what, hint):
    from crpy.errors import UnsupportedResource

    raise UnsupportedResource(pid, what, fd, None, hint)


def check_fd(pid, fd, st):
    """UnsupportedResource (before the parasite; the task untouched) for a unix socket the restore
    could not make exactly again.  Its queue is read here, once, for dump_fd."""
    d = _diag().get(st.st_ino)
    kind = "unix socket"
    if d is None:
        _refuse(pid, fd, kind + " that sock_diag does not list", "it lives in another network namespace")
    kind = describe(d)
    held = _tree_sockets()
    if d.name and d.name[:1] not in (b"/", b"\0"):
        _refuse(pid, fd, f"{kind} bound to the relative name {d.name.decode(errors='replace')!r}",
                "bind it to an absolute path")
    if d.state == TCP_LISTEN and d.rqueue:
        _refuse(pid, fd, f"listening {kind} with {d.rqueue} connection(s) waiting in its backlog",
                "accept them before the dump")
    if d.peer and d.peer not in held:
        _refuse(pid, fd, f"{kind} connected to a peer outside the dumped tree (socket inode {d.peer})",
                "dump the process holding the other end too")
    if d.type != SOCK_DGRAM and d.state == TCP_ESTABLISHED and not d.peer and d.shutdown != 3:
        _refuse(pid, fd, f"{kind} whose connection is not yet accepted by its listener",
                "let the server accept it before the dump")
    if d.type != SOCK_DGRAM and d.peer:
        peer = _diag().get(d.peer)
        if d.name or peer is None or peer.name:
            _refuse(pid, fd, f"{kind} of an accepted connection (one end named)",
                    "crpy restores unnamed connected pairs (socketpair) only for now")
    if d.type == SOCK_DGRAM and d.peer:
        peer = _diag().get(d.peer)
        if peer is not None and peer.peer != d.ino and not peer.name:
            _refuse(pid, fd, f"{kind} connected to an unnamed socket that is not connected back",
                    "connect dgram sockets to a named socket, or use socketpair()")
    mine = _getfd(pid, fd)
    try:
        opts = _read_opts(pid, fd, mine, kind)
        queue = _peek_queue(pid, fd, mine, d, kind, opts)
    finally:
        os.close(mine)
    if queue and d.type == SOCK_DGRAM and not d.peer:
        _refuse_foreign_senders(pid, fd, d, queue, kind)
    if queue and d.type == SOCK_DGRAM and d.peer and _diag()[d.peer].peer != d.ino:
        _refuse(pid, fd, f"connected {kind} with datagrams queued from its unconnected peer",
                "read them before the dump")
    from crpy import resources

    resources.dump_memo.setdefault("unix-read", {})[d.ino] = (opts, queue)


def _refuse_foreign_senders(pid, fd, d, queue, kind):
    """An unconnected dgram receiver: its queue is sent again from an unnamed socket, so every
    message must have come from an unnamed one."""
    if not d.name:
        _refuse(pid, fd, f"unnamed unconnected {kind} with datagrams queued", "read them before the dump")
    for _, sender in queue:
        if sender:
            _refuse(pid, fd, f"{kind} with datagrams queued from the named socket {sender!r}",
                    "crpy re-sends queued datagrams from an unnamed socket; read them before the dump")


def _getfd(pid, fd):
    from crpy.kernel.syscalls import NR, sys_call

    pidfd = sys_call(NR.pidfd_open, pid, 0, what="pidfd_open", pid=pid)
    try:
        return sys_call(NR.pidfd_getfd, pidfd, fd, 0, what=f"pidfd_getfd of fd {fd}", pid=pid)
    finally:
        os.close(pidfd)


def _getint(s, opt):
    return s.getsockopt(socket.SOL_SOCKET, opt)


def _read_opts(pid, fd, mine, kind):
    """The socket options crpy keeps (a dict), refusing those it does not restore."""
    s = socket.socket(fileno=os.dup(mine))
    try:
        opts = {"sndbuf": _getint(s, socket.SO_SNDBUF), "rcvbuf": _getint(s, socket.SO_RCVBUF),
                "snd_tmo": _TIMEVAL.unpack(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)),
                "rcv_tmo": _TIMEVAL.unpack(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)),
                "passcred": _getint(s, SO_PASSCRED), "passsec": _getint(s, SO_PASSSEC),
                "priority": _getint(s, socket.SO_PRIORITY), "rcvlowat": _getint(s, socket.SO_RCVLOWAT),
                "mark": _getint(s, socket.SO_MARK), "peek_off": _getint(s, SO_PEEK_OFF)}
        if _getint(s, SO_GET_FILTER):
            _refuse(pid, fd, f"{kind} with a socket filter attached", "detach it (SO_DETACH_FILTER)")
        try:
            if _getint(s, SO_PASSPIDFD):
                _refuse(pid, fd, f"{kind} with SO_PASSPIDFD set", "crpy does not restore SO_PASSPIDFD yet")
        except OSError:
            pass                                # a kernel without SO_PASSPIDFD
        return opts
    finally:
        s.close()


def _peek_queue(pid, fd, mine, d, kind, opts):
    """[(bytes, sender name)] of the messages waiting to be read, nothing consumed: MSG_PEEK with
    SO_PEEK_OFF moving on from 0, the task's SO_PEEK_OFF put back after.  The walk ends at EAGAIN;
    on a stream or seqpacket socket shut for reading an empty queue reads as end of file (0, for
    ever) instead, so it ends once the bytes sock_diag counted are read (a 0-byte seqpacket record
    after them reads exactly like that end of file, to the task as well)."""
    by_bytes = d.type == SOCK_STREAM or (d.type == SOCK_SEQPACKET and d.shutdown & RCV_SHUTDOWN)
    if d.state == TCP_LISTEN or (by_bytes and not d.rqueue):
        return []
    s = socket.socket(fileno=os.dup(mine))
    out, total = [], 0
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
        try:
            bufsize = max(opts["rcvbuf"], d.rqueue, 1 << 16)
            while not by_bytes or total < d.rqueue:
                try:
                    data, anc, flags, addr = s.recvmsg(bufsize, socket.CMSG_SPACE(4096),
                                                       socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                _check_ancillary(pid, fd, kind, anc, flags)
                if d.type == SOCK_STREAM and not data:
                    break
                out.append((data, addr or b""))
                total += len(data)
                if len(out) > MAX_MESSAGES:
                    _refuse(pid, fd, f"{kind} with more than {MAX_MESSAGES} messages queued", "read them first")
        finally:
            s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, opts["peek_off"])
    finally:
        s.close()
    if out and opts["passcred"]:
        _refuse(pid, fd, f"{kind} with SO_PASSCRED and messages queued (their credentials)",
                "read them before the dump")
    return out


def _check_ancillary(pid, fd, kind, anc, flags):
    rights = [c for c in anc if c[0] == socket.SOL_SOCKET and c[1] == socket.SCM_RIGHTS]
    for c in rights:                            # peeking installed copies of them in crpy: close
        for i in range(len(c[2]) // 4):
            os.close(struct.unpack_from("i", c[2], 4 * i)[0])
    if rights:
        _refuse(pid, fd, f"{kind} with file descriptors in flight (SCM_RIGHTS)",
                "let the receiver take them before the dump")
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        _refuse(pid, fd, f"{kind} with a queued message larger than crpy's buffer", "read it before the dump")


def dump_fd(fdfacts, file_id, files):
    from crpy import resources
    from crpy.images.pb import fdinfo_pb2, sk_packet_pb2, sk_unix_pb2
    from crpy.resources.regfile import fown

    d = _diag()[fdfacts.st.st_ino]
    opts, queue = resources.dump_memo["unix-read"][d.ino]
    entry = sk_unix_pb2.unix_sk_entry(
        id=file_id, ino=d.ino, type=d.type, state=d.state, flags=fdfacts.info.flags & ~O_CLOEXEC,
        uflags=0, backlog=d.wqueue if d.state == TCP_LISTEN else 0, peer=d.peer, fown=fown(),
        opts=_opts_entry(opts), name=d.name or b"", shutdown=d.shutdown, peek_off=opts["peek_off"])
    if d.name and d.name[:1] == b"/":
        entry.vfs_ino, entry.vfs_dev = d.vfs_ino, d.vfs_dev
        _file_perms(entry, d)
    for data, _ in queue:
        files.payload("sk_queues", sk_packet_pb2.sk_packet_entry(id_for=file_id, length=len(data)), data)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.UNIXSK, id=file_id, usk=entry)


def _file_perms(entry, d):
    """Mode and owner of the socket file, when the path still names the bound inode; else the
    socket is bound to a file removed since (deleted)."""
    path = os.fsdecode(d.name.split(b"\0")[0])
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is None or st.st_ino != d.vfs_ino:
        entry.deleted = True
        return
    entry.file_perms.mode, entry.file_perms.uid, entry.file_perms.gid = st.st_mode, st.st_uid, st.st_gid


def _opts_entry(o):
    from crpy.images.pb import sk_opts_pb2

    return sk_opts_pb2.sk_opts_entry(
        so_sndbuf=o["sndbuf"], so_rcvbuf=o["rcvbuf"], so_snd_tmo_sec=o["snd_tmo"][0],
        so_snd_tmo_usec=o["snd_tmo"][1], so_rcv_tmo_sec=o["rcv_tmo"][0], so_rcv_tmo_usec=o["rcv_tmo"][1],
        so_priority=o["priority"], so_rcvlowat=o["rcvlowat"], so_mark=o["mark"],
        so_passcred=bool(o["passcred"]), so_passsec=bool(o["passsec"]))


# ---------------------------------------------------------------- restore side

def _usk_entries(files):
    """{ino: files.img entry} of the unix sockets among files."""
    return {e.usk.ino: e for e in files.values() if e.HasField("usk")}


_groups_of = [None, None]          # (files dict, its groups): computed once per files.img


def _groups(files):
    """{ino: group key} over the unix sockets of files.img: sockets joined by a peer, or a dgram
    socket connected to a named one, are one group (made together)."""
    if _groups_of[0] is not files:
        _groups_of[:] = [files, _find_groups(files)]
    return _groups_of[1]


def _find_groups(files):
    by_ino = _usk_entries(files)
    parent = {ino: ino for ino in by_ino}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ino, e in by_ino.items():
        if e.usk.peer in parent:
            parent[find(ino)] = find(e.usk.peer)
    return {ino: ("usk", find(ino)) for ino in by_ino}


def object_key(entry, files):
    """The one kernel object (group of connected sockets) a files.img entry belongs to."""
    return _groups(files)[entry.usk.ino]


def restore_fd(entry, ctx):
    """A new fd on the socket of `entry`; its whole group is made the first time."""
    key = ("usk-sock", entry.usk.ino)
    if key not in ctx.cache:
        _make_group(ctx, _groups(ctx.files)[entry.usk.ino])
    fd = fcntl.fcntl(ctx.cache[key], fcntl.F_DUPFD_CLOEXEC, 0)
    fcntl.fcntl(fd, fcntl.F_SETFL, entry.usk.flags & os.O_NONBLOCK)
    return fd


def _queues(ctx):
    """{receiving file id: [bytes of each message]} from sk-queues.img."""
    if "sk_queues" not in ctx.cache:
        from crpy.images import framing

        path = framing.image_path(ctx.images_dir, "sk_queues")
        q = {}
        if os.path.exists(path):
            for e, data in framing.read_payload_image(path, "sk_queues"):
                q.setdefault(e.id_for, []).append(bytes(data))
        ctx.cache["sk_queues"] = q
    return ctx.cache["sk_queues"]


def _make_group(ctx, group):
    from crpy.errors import RestoreError

    groups = _groups(ctx.files)
    members = {ino: e.usk for ino, e in _usk_entries(ctx.files).items() if groups[ino] == group}
    made, closers = {}, []
    try:
        for ino, u in members.items():               # named, unconnected: bound (and listening) first
            if u.name and (u.type == SOCK_DGRAM or u.state == TCP_LISTEN or not u.peer):
                made[ino] = _bound(u)
        for ino, u in members.items():
            if ino in made:
                continue
            if u.peer in members and members[u.peer].peer == ino:
                a, b = socket.socketpair(socket.AF_UNIX, u.type)
                made[ino], made[u.peer] = a, b
            elif u.type != SOCK_DGRAM and u.state == TCP_ESTABLISHED and not u.peer:
                a, b = socket.socketpair(socket.AF_UNIX, u.type)   # its peer closed: close b after
                made[ino] = a
                closers.append((ino, b))
            else:
                made[ino] = socket.socket(socket.AF_UNIX, u.type)
        for ino, u in members.items():               # one-way connected dgram sockets
            if u.type == SOCK_DGRAM and u.peer and members.get(u.peer) and members[u.peer].peer != ino:
                made[ino].connect(members[u.peer].name)
        for ino, u in members.items():
            _set_opts(made[ino], u.opts)
        _refill(ctx, members, made, dict(closers))
        for _, b in closers:
            b.close()
        for ino, u in members.items():
            if u.HasField("shutdown") and u.shutdown:
                made[ino].shutdown({1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}[u.shutdown])
            if u.HasField("peek_off"):
                made[ino].setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, u.peek_off)
    except OSError as e:
        raise RestoreError(f"cannot make unix socket group of inode {group[1]} again: {e}") from None
    for ino, s in made.items():
        ctx.cache[("usk-sock", ino)] = ctx.hold(s.detach())


def _bound(u):
    """A socket bound to u.name (a stale socket file of the dumped inode removed first), listening
    with its backlog when it was."""
    from crpy.errors import RestoreError

    s = socket.socket(socket.AF_UNIX, u.type)
    name = u.name
    if name[:1] == b"/":
        path = os.fsdecode(name.split(b"\0")[0])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            import stat

            if not (stat.S_ISSOCK(st.st_mode) and st.st_ino == u.vfs_ino):
                raise RestoreError(f"cannot bind a unix socket to {path}: another file is there now",
                                   "remove it, then restore")
            os.unlink(path)
    s.bind(name)
    if name[:1] == b"/":
        path = os.fsdecode(name.split(b"\0")[0])
        if u.HasField("file_perms"):
            os.chown(path, u.file_perms.uid, u.file_perms.gid)
            os.chmod(path, u.file_perms.mode & 0o7777)
        if u.deleted:
            os.unlink(path)
    if u.state == TCP_LISTEN:
        s.listen(u.backlog)
    return s


def _set_opts(s, o):
    """The dumped options, each only where it differs from a fresh socket (setting a buffer size
    locks it against the kernel's own tuning)."""
    sol = socket.SOL_SOCKET
    if _getint(s, socket.SO_SNDBUF) != o.so_sndbuf:
        s.setsockopt(sol, SO_SNDBUFFORCE, o.so_sndbuf // 2)
    if _getint(s, socket.SO_RCVBUF) != o.so_rcvbuf:
        s.setsockopt(sol, SO_RCVBUFFORCE, o.so_rcvbuf // 2)
    for opt, sec, usec in ((socket.SO_SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec),
                           (socket.SO_RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec)):
        if sec or usec:
            s.setsockopt(sol, opt, _TIMEVAL.pack(sec, usec))
    for opt, value in ((SO_PASSCRED, o.so_passcred), (SO_PASSSEC, o.so_passsec),
                       (socket.SO_PRIORITY, o.so_priority), (socket.SO_RCVLOWAT, o.so_rcvlowat),
                       (socket.SO_MARK, o.so_mark)):
        if value and _getint(s, opt) != int(value):
            s.setsockopt(sol, opt, int(value))


def _refill(ctx, members, made, closed_peers):
    """Every socket's queued messages, in order, sent by its peer (dgram: one send per message)."""
    queues = _queues(ctx)
    for ino, u in members.items():
        msgs = queues.get(u.id, [])
        if not msgs:
            continue
        sender = closed_peers.get(ino)
        if sender is None and u.peer in made:
            sender = made[u.peer]
        if u.type == SOCK_STREAM and sender is not None:
            sender.sendall(b"".join(msgs))
        elif sender is not None:
            for m in msgs:
                sender.send(m)
        else:                                   # an unconnected named dgram socket
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tmp:
                for m in msgs:
                    tmp.sendto(m, u.name)
