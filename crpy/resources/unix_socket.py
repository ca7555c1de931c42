"""Unix sockets: dump and restore of stream, dgram and seqpacket sockets, with their queued data.

Dump.  What a socket is comes from the kernel's sock_diag (crpy.kernel.sock_diag, asked once per
dump): type, state, name, peer, listen backlog, queue lengths and shutdown bits.  Its options
(crpy.resources.sockopts) and its queue come from crpy's own copy of the socket (pidfd_getfd:
the same socket, so nothing is taken from the task): SO_PEEK_OFF is set to 0 for the moment and
MSG_PEEK walks the queue message by message (dgram and seqpacket boundaries kept), then the
task's SO_PEEK_OFF is put back.  Each socket is one files.img entry of type UNIXSK
(unix_sk_entry, CRIU's layout: peer is the peer's inode), its queue one sk-queues.img entry per
message (id_for: the receiving socket's file id) followed by the bytes, as CRIU writes them.

Everything a restore could not make again is refused before the parasite (check_fd): a peer no
task of the tree holds, a connection not yet accepted or waiting in a listening socket's
backlog, fds in flight (SCM_RIGHTS), queued credentials (SO_PASSCRED), a relative name, a path
taken by another file or in a directory removed since, a connection whose accepted end cannot be told or whose listener is outside the tree, datagrams
from a named sender to an unconnected receiver, options crpy.resources.sockopts refuses, and
SO_PEERCRED credentials that the restore would not give again (it makes a connection in one
task, as root: _maker says which).

Restore: the sockets connected to each other are made at once, as a group, by whoever restores
the first of them (the root before its first fork when several tasks hold them,
crpy.resources.shared); how, in crpy.resources.unix_make.
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
SO_PEEK_OFF = 42
MAX_MESSAGES = 1 << 20                    # a queue walk that never ends is a bug: stop it


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
    """{socket inode: pids of the tasks holding it} over the dumped tree (found once per dump)."""
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
                        held.setdefault(int(target[8:-1]), set()).add(pid)
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
    from crpy.errors import CrpyError

    kind = "unix socket"
    try:
        d = _diag().get(st.st_ino)
    except (OSError, CrpyError) as e:
        _refuse(pid, fd, kind, f"the kernel's sock_diag does not answer for unix sockets ({e}): "
                "is unix_diag (CONFIG_UNIX_DIAG) available?")
    if d is None:
        _refuse(pid, fd, kind + " that sock_diag does not list", "it lives in another network namespace")
    kind = describe(d)
    held = _tree_sockets()
    if d.name and d.name[:1] not in (b"/", b"\0"):
        _refuse(pid, fd, f"{kind} bound to the relative name {d.name.decode(errors='replace')!r}",
                "bind it to an absolute path")
    if d.name and d.name[:1] == b"/":
        _check_path(pid, fd, d, kind)
    if d.state not in (TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN):
        _refuse(pid, fd, f"{kind} in state {d.state}", "crpy restores unconnected, connected and listening ones")
    if d.type == SOCK_DGRAM and d.peer_gone:
        _refuse(pid, fd, f"connected {kind} whose peer was closed",
                "its next send would fail with ECONNREFUSED; crpy cannot make such a socket again")
    if d.state == TCP_LISTEN and d.rqueue:
        _refuse(pid, fd, f"listening {kind} with {d.rqueue} connection(s) waiting in its backlog",
                "accept them before the dump")
    if d.peer and d.peer not in held:
        _refuse(pid, fd, f"{kind} connected to a peer outside the dumped tree (socket inode {d.peer})",
                "dump the process holding the other end too")
    if d.type != SOCK_DGRAM and d.state == TCP_ESTABLISHED and not d.peer and d.shutdown != 3:
        _refuse(pid, fd, f"{kind} whose connection is not yet accepted by its listener",
                "let the server accept it before the dump")
    if d.type != SOCK_DGRAM and d.state == TCP_ESTABLISHED:
        peer = _diag().get(d.peer)
        if d.name or (peer is not None and peer.name):
            _check_accepted(pid, fd, d, peer, kind)
    if d.type == SOCK_DGRAM and d.peer:
        peer = _diag().get(d.peer)
        if peer is not None and not peer.name and (peer.peer != d.ino or d.name):
            _refuse(pid, fd, f"{kind} connected to an unnamed socket" +
                    (" while itself named" if d.name else " that is not connected back"),
                    "connect dgram sockets to a named socket, or use socketpair()")
    from crpy.resources import taskfd

    mine = taskfd.duplicate(pid, fd)
    try:
        _check_peercred(pid, fd, d, mine, kind)
        opts, peek_off = _read_opts(pid, fd, mine, kind)
        queue = _peek_queue(pid, fd, mine, d, kind, opts, peek_off)
    finally:
        os.close(mine)
    if queue and d.type == SOCK_DGRAM and not d.peer:
        _refuse_foreign_senders(pid, fd, d, queue, kind)
    if queue and d.type == SOCK_DGRAM and d.peer and _diag()[d.peer].peer != d.ino:
        _refuse(pid, fd, f"connected {kind} with datagrams queued from its unconnected peer",
                "read them before the dump")
    from crpy import resources

    resources.dump_memo.setdefault("unix-read", {})[d.ino] = (opts, peek_off, queue)


def _check_path(pid, fd, d, kind):
    """A socket bound to a path is bound there again at restore: refused when another file has
    taken the path since, or its directory is gone."""
    path = os.fsdecode(d.name.split(b"\0")[0])
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(path) or "/"):
            _refuse(pid, fd, f"{kind} bound to {path} in a directory removed since",
                    "crpy cannot bind it there again; keep the directory")
        return
    if st.st_ino != d.vfs_ino:
        _refuse(pid, fd, f"{kind} bound to {path}, which another file has taken since",
                "crpy cannot bind it there again; remove that file")


def accepted_end(a, b, listener_names):
    """Of two connected stream/seqpacket ends (b None: closed), the one accepted from a listener:
    it bears the listener's name.  The one named like a listener of `listener_names`, else the
    only named one; None when that cannot be told (both named, neither a listener's name)."""
    ends = [x for x in (a, b) if x is not None and x.name]
    for x in ends:
        if x.name in listener_names:
            return x
    return ends[0] if len(ends) == 1 else None


def _listeners():
    """(names of the listening unix sockets the tree holds, {name or socket file inode: ino} of
    those it does not), found once per dump."""
    from crpy import resources

    memo = resources.dump_memo
    if "unix-listeners" not in memo:
        held = _tree_sockets()
        inside, outside = set(), {}
        for d in _diag().values():
            if d.state == TCP_LISTEN and d.name:
                if d.ino in held:
                    inside.add(d.name)
                else:
                    outside[d.vfs_ino if d.name[:1] == b"/" else d.name] = d.ino
        memo["unix-listeners"] = inside, outside
    return memo["unix-listeners"]


def _check_accepted(pid, fd, d, peer, kind):
    """An accepted connection comes back through its listener (or one for the moment): refused
    when it cannot tell which end was accepted, or when that listener lives outside the tree."""
    inside, outside = _listeners()
    server = accepted_end(d, peer, inside)
    if server is None:
        _refuse(pid, fd, f"connected {kind} with both ends named", "crpy cannot tell which end was accepted")
    key = server.vfs_ino if server.name[:1] == b"/" else server.name
    if key in outside:
        _refuse(pid, fd, f"{kind} accepted from a listener outside the dumped tree (socket inode {outside[key]})",
                "dump the process holding the listener too")


def _check_peercred(pid, fd, d, mine, kind):
    """SO_PEERCRED names whoever made the connection (socketpair, connect, listen); the restore
    makes it again in one task, as root: refused unless that gives the same pid, uid and gid."""
    s = socket.socket(fileno=os.dup(mine))
    try:
        cred_pid, uid, gid = struct.unpack("=iII", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    finally:
        s.close()
    if not cred_pid:
        return
    maker = _maker(d.ino)
    if (cred_pid, uid, gid) != (maker, 0, 0):
        _refuse(pid, fd, f"{kind} whose SO_PEERCRED names pid {cred_pid} uid {uid} gid {gid}",
                f"its restore would name pid {maker} uid 0 gid 0; crpy makes connected sockets in the task "
                "holding them all (else the tree's root)")


def _maker(ino):
    """Pid of the task that makes the socket of `ino` again at restore: the one task holding
    every socket connected with it, else the root of the tree (crpy.resources.shared)."""
    from crpy import resources

    held = _tree_sockets()
    pids = set()
    for member in _component(ino):
        pids |= held.get(member, set())
    return next(iter(pids)) if len(pids) == 1 else resources.tree_pids[0]


def _component(ino):
    """Inodes of the sockets made together with `ino` at restore (crpy.resources.unix_make):
    joined by a peer, or an accepted end and the listener of the tree that bears its name."""
    from crpy import resources

    diag, held = _diag(), _tree_sockets()
    memo = resources.dump_memo
    if "unix-links" not in memo:
        links = {}
        listeners = {(diag[i].name, diag[i].type): i for i in held
                     if i in diag and diag[i].state == TCP_LISTEN and diag[i].name}
        for i in held:
            d = diag.get(i)
            if d is None:
                continue
            if d.peer:
                links.setdefault(i, set()).add(d.peer)
                links.setdefault(d.peer, set()).add(i)
            lst = listeners.get((d.name, d.type)) if d.state == TCP_ESTABLISHED and d.name else None
            if lst is not None:
                links.setdefault(i, set()).add(lst)
                links.setdefault(lst, set()).add(i)
        memo["unix-links"] = links
    links, seen, todo = memo["unix-links"], set(), [ino]
    while todo:
        x = todo.pop()
        if x not in seen:
            seen.add(x)
            todo.extend(links.get(x, ()))
    return seen


def _refuse_foreign_senders(pid, fd, d, queue, kind):
    """An unconnected dgram receiver: its queue is sent again from an unnamed socket, so every
    message must have come from an unnamed one."""
    if not d.name:
        _refuse(pid, fd, f"unnamed unconnected {kind} with datagrams queued", "read them before the dump")
    for _, sender in queue:
        if sender:
            _refuse(pid, fd, f"{kind} with datagrams queued from the named socket {sender!r}",
                    "crpy re-sends queued datagrams from an unnamed socket; read them before the dump")


def _read_opts(pid, fd, mine, kind):
    """(sk_opts_entry, SO_PEEK_OFF) of the socket, refusing options crpy does not restore."""
    from crpy.resources import sockopts

    s = socket.socket(fileno=os.dup(mine))
    try:
        bad = sockopts.refused(s)
        if bad is not None:
            _refuse(pid, fd, f"{kind} with {bad[0]}", bad[1])
        return sockopts.read(s), s.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF)
    finally:
        s.close()


def _peek_queue(pid, fd, mine, d, kind, opts, peek_off):
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
            bufsize = max(opts.so_rcvbuf, d.rqueue, 1 << 16)
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
            s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, peek_off)
    finally:
        s.close()
    if out and opts.so_passcred:
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
    opts, peek_off, queue = resources.dump_memo["unix-read"][d.ino]
    entry = sk_unix_pb2.unix_sk_entry(
        id=file_id, ino=d.ino, type=d.type, state=d.state, flags=fdfacts.info.flags & ~O_CLOEXEC,
        uflags=0, backlog=d.wqueue if d.state == TCP_LISTEN else 0, peer=d.peer, fown=fown(),
        opts=opts, name=d.name or b"", shutdown=d.shutdown, peek_off=peek_off)
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


# ---------------------------------------------------------------- restore side

def object_key(entry, files):
    """The one kernel object (group of connected sockets) a files.img entry belongs to."""
    from crpy.resources import unix_make

    return unix_make.groups(files)[entry.usk.ino]


def restore_fd(entry, ctx):
    """The fd of the socket of `entry` (one files.img entry per socket: it is handed over, not
    copied, so a big group costs one fd per socket); its whole group is made the first time."""
    from crpy.resources import unix_make

    key = ("usk-sock", entry.usk.ino)
    if key not in ctx.cache:
        unix_make.make_group(ctx, unix_make.groups(ctx.files)[entry.usk.ino])
    fd = ctx.take(ctx.cache.pop(key))
    fcntl.fcntl(fd, fcntl.F_SETFL, entry.usk.flags & os.O_NONBLOCK)
    return fd
