"""Established TCP connections, through TCP repair mode (as criu's soccr): tcp-stream-INO.img.

Dump (read, with --tcp-established).  crpy's copy of the socket goes into repair mode
(TCP_REPAIR, CAP_NET_ADMIN) and stays there until the dump ends (finish_dump): when the tree is
killed, the task's close of a socket in repair mode sends nothing, neither FIN nor RST, so a
peer outside the tree keeps its end open for the restored one.  With --leave-running, or when
the dump fails, repair mode is left again and the connection goes on.  Read in repair mode:
TCP_INFO (options, window scales), SIOCINQ/SIOCOUTQ/SIOCOUTQNSD (bytes to read, to be
acknowledged, never sent), TCP_MAXSEG (the MSS clamp), TCP_TIMESTAMP, TCP_REPAIR_WINDOW, and
for each queue its sequence number (TCP_REPAIR_QUEUE + TCP_QUEUE_SEQ) and bytes (MSG_PEEK).

Restore (restore, in the restored task).  A socket in repair mode is bound to the saved local
address (repair mode forces the reuse of a port), given both sequence numbers, connected
(no SYN: it is established at once), given its options (SACK, window scales, timestamps, MSS)
and timestamp, its receive queue and the sent part of its send queue, then its window.  It
stays in repair mode until every task of the tree has its sockets (a packet to an end not yet
made would draw a RST): go_live, run by crpy just before the tree resumes, takes each one out
of repair mode and sends the part of the send queue that was never sent.  Half-closed
connections: crpy.resources.tcp_fin puts their FINs back.
"""

import os
import socket
import struct

from crpy.resources import tcp_fin

IPPROTO_TCP = 6
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_REPAIR_OPTIONS = 19, 20, 21, 22
TCP_TIMESTAMP, TCP_REPAIR_WINDOW = 24, 29
TCP_NO_QUEUE, TCP_RECV_QUEUE, TCP_SEND_QUEUE = 0, 1, 2
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
TCPOPT_MAXSEG, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP = 2, 3, 4, 8
SIOCINQ, SIOCOUTQ, SIOCOUTQNSD = 0x541B, 0x5411, 0x894B
SO_PEEK_OFF = 42
TCP_ESTABLISHED = 1
_WINDOW = struct.Struct("=5I")        # struct tcp_repair_window
_REPAIR_OPT = struct.Struct("=II")    # struct tcp_repair_opt: code, value

_held = []                            # crpy's fds on the sockets this dump put in repair mode


# ---------------------------------------------------------------- dump side

def _ioctl_int(s, request):
    import array
    import fcntl

    n = array.array("i", [0])
    fcntl.ioctl(s.fileno(), request, n)
    return n[0]


def _peek_queue(s, queue, length):
    """(sequence number, bytes) of one queue of a socket in repair mode."""
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, queue)
    seq = struct.unpack("=I", s.getsockopt(IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
    data = b""
    if length:        # one byte more than expected: a queue longer than counted is a bug
        data = s.recv(length + 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    return seq, data


def read(pid, fd, s, what, reuseaddr, state):
    """(tcp_stream_entry, receive queue bytes, send queue bytes) of the connected socket s
    (crpy's copy of pid/fd, established or half-closed: `state`), left in repair mode until finish_dump (which gives SO_REUSEADDR,
    that repair mode overrides, back as `reuseaddr`)."""
    from crpy.errors import UnsupportedResource
    from crpy.images.pb import tcp_stream_pb2

    if s.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF) not in (-1, 0xFFFFFFFF):
        raise UnsupportedResource(pid, f"established {what} with SO_PEEK_OFF set", fd,
                                  hint="clear it (-1) before the dump")
    try:
        s.setsockopt(IPPROTO_TCP, TCP_REPAIR, 1)
    except OSError as e:
        raise UnsupportedResource(pid, f"established {what}", fd,
                                  hint=f"TCP repair mode refused ({e.strerror}): crpy needs CAP_NET_ADMIN") from None
    _held.append((os.dup(s.fileno()), reuseaddr))
    info = s.getsockopt(IPPROTO_TCP, socket.TCP_INFO, 8)
    if info[0] != state:
        raise UnsupportedResource(pid, f"{what}, whose state changed while read", fd, hint="dump again")
    options, scales = info[5], info[6]
    outq, unsent = tcp_fin.dump_lengths(state, _ioctl_int(s, SIOCOUTQ), _ioctl_int(s, SIOCOUTQNSD))
    inq = _ioctl_int(s, SIOCINQ)
    e = tcp_stream_pb2.tcp_stream_entry(
        inq_len=inq, inq_seq=0, outq_len=outq, outq_seq=0, opt_mask=options,
        snd_wscale=scales & 0xF if options & TCPI_OPT_WSCALE else 0,
        rcv_wscale=scales >> 4 if options & TCPI_OPT_WSCALE else 0,
        mss_clamp=s.getsockopt(IPPROTO_TCP, socket.TCP_MAXSEG), unsq_len=unsent,
        nodelay=bool(s.getsockopt(IPPROTO_TCP, socket.TCP_NODELAY)),
        cork=bool(s.getsockopt(IPPROTO_TCP, socket.TCP_CORK)))
    if options & TCPI_OPT_TIMESTAMPS:
        e.timestamp = struct.unpack("=I", s.getsockopt(IPPROTO_TCP, TCP_TIMESTAMP, 4))[0]
    e.snd_wl1, e.snd_wnd, e.max_window, e.rcv_wnd, e.rcv_wup = _WINDOW.unpack(
        s.getsockopt(IPPROTO_TCP, TCP_REPAIR_WINDOW, _WINDOW.size))
    e.inq_seq, rq = _peek_queue(s, TCP_RECV_QUEUE, inq)
    e.outq_seq, sq = _peek_queue(s, TCP_SEND_QUEUE, outq)
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)
    if len(rq) != inq or len(sq) != outq:
        raise UnsupportedResource(pid, f"established {what} whose queues changed while read", fd,
                                  hint="dump again")
    return e, rq, sq


def write(images_dir, ino, stream):
    from crpy.images import framing

    e, rq, sq = stream
    framing.write_payload_image(framing.image_path(images_dir, "tcp_stream", ino), "tcp_stream", [(e, rq + sq)])


def finish_dump(killed):
    """The dump ends: after the tree was killed the sockets close silently (repair mode);
    otherwise (--leave-running, a failed dump) they leave repair mode and go on."""
    while _held:
        fd, reuseaddr = _held.pop()
        s = socket.socket(fileno=fd)
        try:
            if not killed:
                repair_off(s, reuseaddr)
        finally:
            s.close()


def repair_off(s, reuseaddr):
    """Out of repair mode (a window probe goes out), with the task's SO_REUSEADDR again (leaving
    repair mode clears it)."""
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR, 0)
    if reuseaddr:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


# ---------------------------------------------------------------- restore side

def read_stream(images_dir, ino):
    """(tcp_stream_entry, receive queue bytes, send queue bytes) from tcp-stream-INO.img."""
    from crpy.images import framing

    path = framing.image_path(images_dir, "tcp_stream", ino)
    entries = framing.read_payload_image(path, "tcp_stream")
    if len(entries) != 1:
        raise framing.entry_error(path, f"{len(entries)} entries, one connection expected", 0)
    e, data = entries[0]
    return e, bytes(data[:e.inq_len]), bytes(data[e.inq_len:])


def _send_all(s, data, flags=0):
    view = memoryview(data)
    while view:
        view = view[s.send(view, flags):]


def restore(s, isk, images_dir):
    """Make s (fresh, options set) the established connection of inet_sk_entry isk again; it is
    left in repair mode (go_live takes it out)."""
    from crpy.resources.inet_tcp import words_addr

    e, rq, sq = read_stream(images_dir, isk.ino)
    inq_seq, outq_seq = tcp_fin.restore_seqs(isk.state, e.inq_seq, e.outq_seq)
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR, 1)
    s.bind((words_addr(isk.family, isk.src_addr), isk.src_port))
    for queue, seq in ((TCP_RECV_QUEUE, inq_seq - e.inq_len), (TCP_SEND_QUEUE, outq_seq - e.outq_len)):
        s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, queue)
        s.setsockopt(IPPROTO_TCP, TCP_QUEUE_SEQ, struct.pack("=I", seq & 0xFFFFFFFF))
    s.connect((words_addr(isk.family, isk.dst_addr), isk.dst_port))
    opts = [(TCPOPT_MAXSEG, e.mss_clamp)]
    if e.opt_mask & TCPI_OPT_SACK:
        opts.append((TCPOPT_SACK_PERM, 0))
    if e.opt_mask & TCPI_OPT_WSCALE:
        opts.append((TCPOPT_WINDOW, e.snd_wscale + (e.rcv_wscale << 16)))
    if e.opt_mask & TCPI_OPT_TIMESTAMPS:
        opts.append((TCPOPT_TIMESTAMP, 0))
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR_OPTIONS, b"".join(_REPAIR_OPT.pack(*o) for o in opts))
    if e.opt_mask & TCPI_OPT_TIMESTAMPS:
        s.setsockopt(IPPROTO_TCP, TCP_TIMESTAMP, struct.pack("=I", e.timestamp))
    if rq:
        s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        _send_all(s, rq)
    sent = len(sq) - e.unsq_len
    if isk.state in tcp_fin.SENT_FIN:      # our FIN follows: all counts as sent (retransmitted later)
        sent = len(sq)
    if sent:                               # sent before the dump, not yet acknowledged
        s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        _send_all(s, sq[:sent])
    s.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)
    if e.HasField("snd_wl1"):
        rcv_wup, rcv_wnd = tcp_fin.window_before_fin(isk.state, e.rcv_wup, e.rcv_wnd)
        s.setsockopt(IPPROTO_TCP, TCP_REPAIR_WINDOW,
                     _WINDOW.pack(e.snd_wl1, e.snd_wnd, e.max_window, rcv_wnd, rcv_wup & 0xFFFFFFFF))
    tcp_fin.in_child(s, isk.state)


def go_live(images_dir, pids):
    """Before the restored tree resumes: every restored connection leaves repair mode (each
    task's socket, reached with pidfd_getfd) and sends what it had never sent."""
    from crpy.resources import inet_tcp
    from crpy.resources.fdtable import read_fdinfo, read_files

    files, done = read_files(images_dir), set()
    for pid in pids:
        try:
            fdinfo = read_fdinfo(images_dir, pid)
        except Exception:
            continue                         # a zombie has no fd table
        for fe in fdinfo:
            entry = files.get(fe.id)
            if entry is None or not entry.HasField("isk") or not inet_tcp.connected(entry.isk.state) \
                    or entry.isk.ino in done or inet_tcp.restored_closed():
                continue
            done.add(entry.isk.ino)
            _go_live_one(images_dir, pid, fe.fd, entry.isk)


def _go_live_one(images_dir, pid, fd, isk):
    from crpy.errors import RestoreError
    from crpy.resources import taskfd
    from crpy.resources.inet_tcp import describe

    e, _, sq = read_stream(images_dir, isk.ino)
    s = socket.socket(fileno=taskfd.duplicate(pid, fd))
    try:
        if isk.state != TCP_ESTABLISHED:
            tcp_fin.when_all_made(s, isk, e)
        repair_off(s, isk.opts.reuseaddr)
        if e.unsq_len and isk.state not in tcp_fin.SENT_FIN:   # never sent before the dump: sent now, as the task would
            _send_all(s, sq[len(sq) - e.unsq_len:], socket.MSG_DONTWAIT)   # (the task's O_NONBLOCK untouched)
    except OSError as err:
        raise RestoreError(f"pid {pid} fd {fd}: cannot bring {describe(isk)} back to life: "
                           f"{err.strerror or err}") from None
    finally:
        s.close()
