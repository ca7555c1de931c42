"""The dumper's end of the parasite's command channel (mirrors parasite/parasite.h).

An abstract AF_UNIX SOCK_SEQPACKET socket: the dumper listens on `\\0crpy-PID-RANDOM`, the
parasite connects.  A command is {u32 op, u32 len, u64 a[4]} + data (+ SCM_RIGHTS); a reply
is {i64 ret, u32 len, u32 op} + data (+ SCM_RIGHTS).  While waiting for the parasite, the task
is watched with waitpid(WNOHANG): a fault in the parasite shows up as a signal stop, not as
silence.
"""

import array
import os
import select
import signal
import _socket as socket   # the C module: socket.py's enums cost ms of every dump's start-up
import struct

from crpy.errors import ParasiteError
from crpy.kernel import ptrace

PING, OPEN, CLOSE, RECVFD, DUMP, SIGACTS, MISC, DRAIN_FDS, FINISH, TIMERS, UFFD = range(1, 12)
HASH, HASH_SET = 1, 2              # DUMP a1: crc32c per HASH_CHUNK bytes too (parasite.h)
HASH_CHUNK = 1 << 20
MAX_TIMERS = 128
MAX_FDS = 253
CMD_BUF = 256 * 1024
CMD = struct.Struct("<II4Q")
REPLY = struct.Struct("<qII")
ARGS = struct.Struct("<QQQQQii110s2xiiQq")  # struct parasite_args
MAGIC = 0x7261702D79707263
_WATCH_MS = 100
_GROUP_STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_REPLY_MAX = 8192  # the largest reply is SIGACTS (2 KiB + header)


class TaskStopped(ParasiteError):
    """The task stopped (a fault or signal) while the parasite was supposed to be running."""

    def __init__(self, pid, status):
        self.pid, self.status = pid, status
        super().__init__(f"pid {pid}: parasite stopped: {ptrace.describe_status(status)}")


class Channel:
    """Listening socket before the parasite runs; the connection afterwards."""

    def __init__(self, pid):
        self.pid = pid
        self.name = b"\0crpy-%d-%s" % (pid, os.urandom(8).hex().encode())
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(self.name)
        self.listener.listen(1)
        self.conn = None
        self.group_stopped = 0  # the stop signal, if the task was group-stopped meanwhile

    def sockaddr(self):
        """(bytes for sockaddr_un.sun_path, addr_len) as the parasite's connect() needs them."""
        return self.name, 2 + len(self.name)

    def _watch(self, poller, timeout):
        """Wait until `poller` fires, checking the task every _WATCH_MS; raise on a stop."""
        waited = 0
        while not poller.poll(_WATCH_MS):
            self._check_task()
            waited += _WATCH_MS
            if timeout is not None and waited >= timeout * 1000:
                raise ParasiteError(f"pid {self.pid}: parasite did not answer in {timeout} s")

    def _check_task(self):
        """A stop of the task while the parasite runs.  SIGSTOP & co are let through: first
        their signal-delivery-stop (passed on, which starts the group-stop), then the
        group-stop itself (an event-stop): the parasite goes on, and the task stops for real
        once detached.  Any other stop is a fault of the parasite."""
        status = ptrace.wait(self.pid, nohang=True)
        if not status:
            return
        sig = os.WSTOPSIG(status) if os.WIFSTOPPED(status) else 0
        if sig in _GROUP_STOP_SIGNALS:
            if ptrace.is_event_stop(status):
                self.group_stopped = sig
                ptrace.cont(self.pid)
            elif status >> 16 == 0:
                ptrace.cont(self.pid, sig)
            return
        raise TaskStopped(self.pid, status)

    def accept(self, timeout=10):
        """Take the parasite's connection; anyone else who found the (abstract, hence
        visible in /proc/net/unix) name and connected is turned away (SO_PEERCRED)."""
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        while self.conn is None:
            self._watch(poller, timeout)
            conn = socket.socket(fileno=self.listener._accept()[0])   # _socket has no accept()
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer = struct.unpack("3i", creds)[0]
            if peer == self.pid or peer == _tgid(self.pid):   # /proc read only for a thread's parasite
                self.conn = conn
            else:
                conn.close()
        self.listener.close()
        self.listener = None
        # Blocking reads that give up every _WATCH_MS (EAGAIN) to look at the task: as fast as
        # a plain recv, yet a parasite that faulted cannot hang the dumper.
        tv = struct.pack("@ll", 0, _WATCH_MS * 1000)
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)

    def send(self, op, args=(), data=b"", fds=None):
        a = [x & 0xFFFFFFFFFFFFFFFF for x in args] + [0] * (4 - len(args))
        msg = [CMD.pack(op, len(data), *a), data] if data else [CMD.pack(op, 0, *a)]
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
        try:
            self.conn.sendmsg(msg, anc, socket.MSG_NOSIGNAL)
        except OSError as e:
            raise ParasiteError(f"pid {self.pid}: sending command {op}: {e.strerror}") from e

    def receive(self, op, timeout=60, nfds=0):
        """-> (ret, data, fds) of the reply to `op`; ret < 0 raises ParasiteError."""
        raw, anc, flags = self._read(op, timeout, nfds)
        fds = _fds_of(anc)
        if len(raw) < REPLY.size:
            _close_all(fds)
            raise ParasiteError(f"pid {self.pid}: parasite hung up (reply to command {op})")
        ret, length, rop = REPLY.unpack_from(raw)
        if rop != op or len(raw) != REPLY.size + length or flags & socket.MSG_CTRUNC:
            _close_all(fds)
            raise ParasiteError(f"pid {self.pid}: bad reply (op {rop}, {len(raw)} bytes) to command {op}")
        if ret < 0:
            _close_all(fds)
            err = ParasiteError(f"pid {self.pid}: parasite command {op}: {os.strerror(-ret)}")
            err.errno = -ret              # what the task's own call returned
            raise err
        return ret, raw[REPLY.size:], fds

    def _read(self, op, timeout, nfds):
        waited = 0
        while True:
            try:
                if not nfds:
                    return self.conn.recv(_REPLY_MAX), (), 0
                raw, anc, flags, _ = self.conn.recvmsg(_REPLY_MAX, socket.CMSG_SPACE(4 * nfds),
                                                       socket.MSG_CMSG_CLOEXEC)
                return raw, anc, flags
            except BlockingIOError:
                self._check_task()
                waited += _WATCH_MS
                if timeout is not None and waited >= timeout * 1000:
                    raise ParasiteError(f"pid {self.pid}: parasite did not answer command {op} "
                                        f"in {timeout} s") from None
            except OSError as e:
                raise ParasiteError(f"pid {self.pid}: reading reply {op}: {e.strerror}") from e

    def call(self, op, args=(), data=b"", fds=None, timeout=60, nfds=0):
        self.send(op, args, data, fds)
        return self.receive(op, timeout, nfds)

    def close(self):
        for s in (self.listener, self.conn):
            if s is not None:
                s.close()
        self.listener = self.conn = None


def _tgid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    return pid


def _fds_of(anc):
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def _close_all(fds):
    for fd in fds:
        os.close(fd)


def pack_args(map_base, map_len, frame, gadget, channel, idle_ms, restart=(0, 0)):
    """restart: (rip just after the syscall the frame re-issues, its -ERESTART* code), or (0, 0)."""
    path, addr_len = channel.sockaddr()
    sun = struct.pack("<H", socket.AF_UNIX) + path
    return ARGS.pack(MAGIC, map_base, map_len, frame, gadget, addr_len, idle_ms,
                     sun.ljust(110, b"\0"), 0, 0, *restart)
