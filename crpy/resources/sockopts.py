"""Socket-level (SOL_SOCKET) options of any socket: read at dump, set again at restore.

They go into CRIU's sk_opts_entry (sk-opts.proto): buffer sizes and whether the task locked them
(SO_BUF_LOCK), timeouts, SO_REUSEADDR/REUSEPORT, BROADCAST, KEEPALIVE, OOBINLINE, DONTROUTE,
LINGER, PRIORITY, RCVLOWAT, MARK, PASSCRED, PASSSEC and the device bound to.  read() refuses
(returns a reason) what crpy does not set again: an attached socket filter, SO_PASSPIDFD,
timestamping.  apply() sets each option only where it differs from what the fresh socket has.
"""

import socket
import struct

SOL = socket.SOL_SOCKET
SO_PASSCRED, SO_PASSSEC, SO_GET_FILTER, SO_PEEK_OFF = 16, 34, 26, 42
SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_BUF_LOCK, SO_PASSPIDFD = 32, 33, 72, 76
SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TIMESTAMPING = 29, 35, 37
TIMEVAL = struct.Struct("=qq")
LINGER = struct.Struct("=ii")

# sk_opts_entry field -> SOL_SOCKET option, for the plain integer and boolean ones
_INTS = {"so_priority": socket.SO_PRIORITY, "so_rcvlowat": socket.SO_RCVLOWAT, "so_mark": socket.SO_MARK}
_BOOLS = {"reuseaddr": socket.SO_REUSEADDR, "so_passcred": SO_PASSCRED, "so_passsec": SO_PASSSEC,
          "so_dontroute": socket.SO_DONTROUTE, "so_reuseport": socket.SO_REUSEPORT,
          "so_broadcast": socket.SO_BROADCAST, "so_keepalive": socket.SO_KEEPALIVE}
_REFUSED = ((SO_GET_FILTER, "a socket filter attached", "detach it (SO_DETACH_FILTER)"),
            (SO_PASSPIDFD, "SO_PASSPIDFD set", "clear it before the dump"),
            (SO_TIMESTAMP, "SO_TIMESTAMP set", "clear it before the dump"),
            (SO_TIMESTAMPNS, "SO_TIMESTAMPNS set", "clear it before the dump"),
            (SO_TIMESTAMPING, "SO_TIMESTAMPING set", "clear it before the dump"))


def _get(s, opt):
    return s.getsockopt(SOL, opt)


def refused(s):
    """(what, hint) of the first option set on s that crpy does not restore, or None."""
    for opt, what, hint in _REFUSED:
        try:
            if _get(s, opt):
                return what, hint
        except OSError:
            continue                            # an option this kernel does not have
    return None


def read(s):
    """sk_opts_entry of socket s."""
    from crpy.images.pb import sk_opts_pb2

    snd, rcv = TIMEVAL.unpack(s.getsockopt(SOL, socket.SO_SNDTIMEO, 16)), \
        TIMEVAL.unpack(s.getsockopt(SOL, socket.SO_RCVTIMEO, 16))
    e = sk_opts_pb2.sk_opts_entry(so_sndbuf=_get(s, socket.SO_SNDBUF), so_rcvbuf=_get(s, socket.SO_RCVBUF),
                                  so_snd_tmo_sec=snd[0], so_snd_tmo_usec=snd[1],
                                  so_rcv_tmo_sec=rcv[0], so_rcv_tmo_usec=rcv[1])
    for name, opt in _INTS.items():
        setattr(e, name, _get(s, opt))
    for name, opt in _BOOLS.items():
        try:
            setattr(e, name, bool(_get(s, opt)))
        except OSError:
            continue        # not of this family (SO_PASSCRED/PASSSEC on TCP since Linux 6.16): left unset
    e.so_oobinline = _get(s, socket.SO_OOBINLINE)
    onoff, linger = LINGER.unpack(s.getsockopt(SOL, socket.SO_LINGER, LINGER.size))
    if onoff:
        e.so_linger = linger
    e.so_buf_lock = _get(s, SO_BUF_LOCK)
    dev = s.getsockopt(SOL, socket.SO_BINDTODEVICE, 16).split(b"\0")[0]
    if dev:
        e.so_bound_dev = dev.decode()
    return e


def apply(s, e):
    """Set the options of sk_opts_entry e on the fresh socket s."""
    if _get(s, socket.SO_SNDBUF) != e.so_sndbuf:
        s.setsockopt(SOL, SO_SNDBUFFORCE, e.so_sndbuf // 2)     # the kernel doubles what it is given
    if _get(s, socket.SO_RCVBUF) != e.so_rcvbuf:
        s.setsockopt(SOL, SO_RCVBUFFORCE, e.so_rcvbuf // 2)
    if e.HasField("so_buf_lock") and _get(s, SO_BUF_LOCK) != e.so_buf_lock:
        s.setsockopt(SOL, SO_BUF_LOCK, e.so_buf_lock)
    for opt, sec, usec in ((socket.SO_SNDTIMEO, e.so_snd_tmo_sec, e.so_snd_tmo_usec),
                           (socket.SO_RCVTIMEO, e.so_rcv_tmo_sec, e.so_rcv_tmo_usec)):
        if sec or usec:
            s.setsockopt(SOL, opt, TIMEVAL.pack(sec, usec))
    for name, opt in list(_INTS.items()) + list(_BOOLS.items()) + [("so_oobinline", socket.SO_OOBINLINE)]:
        if e.HasField(name) and _get(s, opt) != int(getattr(e, name)):
            s.setsockopt(SOL, opt, int(getattr(e, name)))
    if e.HasField("so_linger"):
        s.setsockopt(SOL, socket.SO_LINGER, LINGER.pack(1, e.so_linger))
    if e.so_bound_dev:
        s.setsockopt(SOL, socket.SO_BINDTODEVICE, e.so_bound_dev.encode())
