"""Unix sockets at restore: each group of connected sockets made again at once (crpy.resources.unix_socket).

A group is the sockets joined by a peer, a dgram socket and the named socket it is connected to,
and an accepted connection and the listener it was accepted from (same name and type).  Making
one: named sockets that are not connected are bound first (a stale socket file is removed only
when it is the inode that was dumped), listening ones listen with their backlog.  Connected
stream/seqpacket ends: an unnamed pair comes from socketpair(); an accepted connection (the end
that bears its listener's name) is made as it came about: its client (bound first if it was)
connects to the listener of the group, or to a listener bound for the moment when the original
one is closed, and the listener accepts it.  An end whose peer was closed gets a peer for the
moment, closed once its data went in.  A one-way connected dgram socket connects to its peer's
name.  Then options, then each socket's queue, sent in order by its peer (an unconnected named
dgram receiver: from a fresh unnamed socket to its name); only then are the files of sockets
whose file was removed at the dump removed again (connects and sends went through them), and
last the shutdown bits are set.
"""

import os
import socket
import stat

from crpy.resources import sockopts
from crpy.resources.unix_socket import (SO_PEEK_OFF, SOCK_DGRAM, SOCK_STREAM, TCP_ESTABLISHED, TCP_LISTEN,
                                        accepted_end)

_groups_of = [None, None]          # (files dict, its groups): computed once per files.img


def usk_entries(files):
    """{ino: files.img entry} of the unix sockets among files."""
    return {e.usk.ino: e for e in files.values() if e.HasField("usk")}


def groups(files):
    """{ino: group key} of every unix socket of files.img (see the banner)."""
    if _groups_of[0] is not files:
        _groups_of[:] = [files, _find_groups(files)]
    return _groups_of[1]


def _connected(u):
    """A stream/seqpacket end of a connection (its peer maybe closed since)."""
    return u.type != SOCK_DGRAM and u.state == TCP_ESTABLISHED


def _find_groups(files):
    by_ino = usk_entries(files)
    parent = {ino: ino for ino in by_ino}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    listeners = {(e.usk.name, e.usk.type): ino for ino, e in by_ino.items() if e.usk.state == TCP_LISTEN}
    for ino, e in by_ino.items():
        u = e.usk
        if u.peer in parent:
            parent[find(ino)] = find(u.peer)
        if _connected(u) and u.name and (u.name, u.type) in listeners:
            parent[find(ino)] = find(listeners[(u.name, u.type)])
    return {ino: ("usk", find(ino)) for ino in by_ino}


def queues(ctx):
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


def make_group(ctx, group):
    """Make every socket of `group`; ctx.cache[("usk-sock", ino)] holds each."""
    from crpy.errors import RestoreError

    all_groups = groups(ctx.files)
    members = {ino: e.usk for ino, e in usk_entries(ctx.files).items() if all_groups[ino] == group}
    made, closers = {}, {}
    try:
        for ino, u in members.items():               # named, not connected: bound (and listening) first
            if u.name and not _connected(u) and (u.type == SOCK_DGRAM or u.state == TCP_LISTEN or not u.peer):
                made[ino] = _bound(u)
        listeners = {(u.name, u.type): made[ino] for ino, u in members.items() if u.state == TCP_LISTEN}
        for ino, u in members.items():
            if ino in made:
                continue
            if _connected(u) or _unnamed_dgram_pair(u, members.get(u.peer)):
                peer = members.get(u.peer)
                a, b = _connection(u, peer, listeners)
                made[ino] = a
                if peer is not None:
                    made[u.peer] = b
                else:
                    closers[ino] = b                  # its peer closed: closed after the data
            else:
                made[ino] = socket.socket(socket.AF_UNIX, u.type)
        for ino, u in members.items():               # dgram sockets connected to a named one
            if u.type == SOCK_DGRAM and u.peer in members and members[u.peer].name:
                made[ino].connect(members[u.peer].name)
        for ino, u in members.items():
            sockopts.apply(made[ino], u.opts)
        _refill(ctx, members, made, closers)
        for u in members.values():      # removed since the bind: once all connected and refilled
            if u.name[:1] == b"/" and u.deleted and os.path.lexists(_path(u.name)):
                os.unlink(_path(u.name))
        for b in closers.values():
            b.close()
        for ino, u in members.items():
            if u.HasField("shutdown") and u.shutdown:
                made[ino].shutdown({1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}[u.shutdown])
            if u.HasField("peek_off"):
                made[ino].setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, u.peek_off)
    except OSError as e:
        raise RestoreError(f"cannot make the unix sockets of inode {group[1]} again: {e}") from None
    for ino, s in made.items():
        ctx.cache[("usk-sock", ino)] = ctx.hold(s.detach())


def _unnamed_dgram_pair(u, peer):
    return u.type == SOCK_DGRAM and peer is not None and peer.peer == u.ino and not u.name and not peer.name


def _connection(u, peer, listeners):
    """(socket of u, socket of its peer): a socketpair when neither end is named, else the
    accepted connection made again through the listener (or one for the moment)."""
    if not u.name and (peer is None or not peer.name):
        return socket.socketpair(socket.AF_UNIX, u.type)
    server = accepted_end(u, peer, {name for name, _ in listeners})
    client = peer if server is u else u
    c = socket.socket(socket.AF_UNIX, u.type)
    if client is not None and client.name:
        _bind(c, client)
    listener = listeners.get((server.name, server.type))
    if listener is not None:
        c.connect(server.name)
        s = listener.accept()[0]
    else:                                       # its listener is closed: one for the moment
        with socket.socket(socket.AF_UNIX, u.type) as tmp:
            _bind(tmp, server)
            tmp.listen(1)
            c.connect(server.name)
            s = tmp.accept()[0]
    return (s, c) if server is u else (c, s)


def _path(name):
    return os.fsdecode(name.split(b"\0")[0])


def _bind(s, u):
    """Bind s to u.name; a socket file there is removed first only when it is the dumped inode."""
    from crpy.errors import RestoreError

    if u.name[:1] == b"/":
        path = _path(u.name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not (stat.S_ISSOCK(st.st_mode) and st.st_ino == u.vfs_ino):
                raise RestoreError(f"cannot bind a unix socket to {path}: another file is there now",
                                   "remove it, then restore")
            os.unlink(path)
    s.bind(u.name)
    if u.name[:1] == b"/" and u.HasField("file_perms"):
        os.chown(_path(u.name), u.file_perms.uid, u.file_perms.gid)
        os.chmod(_path(u.name), u.file_perms.mode & 0o7777)


def _bound(u):
    """A socket bound to u.name, listening with its backlog when it was."""
    s = socket.socket(socket.AF_UNIX, u.type)
    _bind(s, u)
    if u.state == TCP_LISTEN:
        s.listen(u.backlog)
    return s


def _refill(ctx, members, made, closed_peers):
    """Every socket's queued messages, in order, sent by its peer (dgram: one send per message)."""
    q = queues(ctx)
    for ino, u in members.items():
        msgs = q.get(u.id, [])
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
