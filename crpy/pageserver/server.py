"""The receiving side: `crpy page-server -D DIR --port N` and the session `crpy receive` runs.

One connection is one session.  Files are written into the directory with splice(2) from the
socket through a pipe, each hashed over its page cache as it lands (the stream digest of
crpy.pageserver.protocol) and compared with the sender's at CLOSE.  A damaged, truncated or
malformed stream ends the session: the server sends ERR with one line, removes every file, link
and directory it made in this session, and fails.  At FIN the directory is complete: its
crpy-digests is written (so `crpy restore` checks it again later) and the sender is told OK.

    Session(sock, root_dir, receive=None).serve()   # receive: crpy.migrate.receive's handler
    run_page_server(images_dir, address, port, daemon=False, status_fd=None) -> exit code
"""

import mmap
import os
import socket
import struct
import sys

from crpy.log import log
from crpy.pageserver import protocol as P

PIPE_SIZE = 4 << 20
HASH_STEP = 4 << 20                # bytes received between two updates of a stream digest
SOCKET_BUFFER = 4 << 20
_F_SETPIPE_SZ = 1031


class Refused(Exception):
    """The session ends: str() is the one line sent to the sender and printed."""


def _check_name(name, what):
    if not name or "/" in name or "\0" in name or name in (".", "..") or name.startswith("."):
        raise Refused(f"refused {what} name {name!r}")
    return name


class _OpenFile:
    """A file being received: its stream digest, and its crpy-digests chunks hashed beside the
    writing by the directory's digest.Recorder (so FIN does not read it all again)."""

    def __init__(self, directory, name, algo, recorder):
        from crpy.images.create import create_image

        self.name, self.path = name, os.path.join(directory, name)
        self.fd = create_image(self.path)
        self.rfd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.digest, self.size, self.written = P.StreamHash(algo), 0, 0   # size: bytes hashed
        self.follow = recorder.follow(self.path)

    def hash_region(self, start, length):
        """Hash bytes [start, start+length) as written (through the page cache, no copy)."""
        base = start - start % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self.rfd, start + length - base, mmap.MAP_SHARED, mmap.PROT_READ, offset=base) as m:
            with memoryview(m) as mv:
                self.digest.update(mv[start - base:])

    def close(self, complete):
        os.close(self.fd)
        os.close(self.rfd)
        self.follow.close() if complete else self.follow.abandon()


class Session:
    """Serve one connection.  receive: None for `crpy page-server` (one dump, ends at FIN), or an
    object with prepare(), restore(dir, lazy) -> pid, finish() and abandon() (crpy receive: SUBDIR
    per round, RESTORE, DONE)."""

    def __init__(self, sock, root_dir, receive=None):
        self.sock, self.root, self.dir, self.receive = sock, root_dir, root_dir, receive
        self.algo, self.file, self.created, self.pipe = None, None, [], None
        self.recorder = None           # digest.Recorder of self.dir: crpy-digests at FIN
        self.bytes = 0

    def serve(self):
        try:
            self._loop()
        except (P.StreamError, Refused, OSError) as e:
            line = str(e) if not isinstance(e, OSError) else f"{e.filename or 'page server'}: {e.strerror or e}"
            self._fail(line)
            raise Refused(line) from None
        except BaseException:
            self._fail("the page server was stopped")
            raise
        finally:
            if self.pipe:
                os.close(self.pipe[0])
                os.close(self.pipe[1])

    def _loop(self):
        handlers = {P.HELLO: self._hello, P.SUBDIR: self._subdir, P.OPEN: self._open, P.DATA: self._data,
                    P.PATCH: self._patch, P.CLOSE: self._close, P.LINK: self._link, P.FIN: self._fin,
                    P.RESTORE: self._restore, P.DONE: self._done}
        while True:
            try:
                cmd, a, b = P.recv_header(self.sock)
            except P.StreamError as e:
                raise P.StreamError(f"the sender went away before the end ({e})") from None
            if self.algo is None and cmd != P.HELLO:
                raise Refused(f"{P.NAMES[cmd]} before HELLO")
            if cmd != P.DATA and b > P.MAX_PAYLOAD:
                raise Refused(f"{P.NAMES[cmd]} message of {b} bytes")
            if handlers[cmd](a, b) == "end":
                return

    def _payload(self, b):
        return P.recv_exact(self.sock, b) if b else b""

    def _reply(self, cmd, a=0, payload=b""):
        P.send(self.sock, cmd, a, payload)

    def _hello(self, a, b):
        algo = self._payload(b).decode(errors="replace")
        if a != P.VERSION:
            raise Refused(f"page server protocol version {a}, this crpy speaks {P.VERSION}")
        P.StreamHash(algo)
        self.algo = algo
        self._reply(P.OK)

    def _subdir(self, a, b):
        if self.receive is None:
            raise Refused("SUBDIR is for crpy receive, not crpy page-server")
        name = _check_name(self._payload(b).decode(errors="replace"), "directory")
        self.dir, self.recorder = os.path.join(self.root, name), None
        os.mkdir(self.dir, 0o700)
        self.created.append(self.dir)
        self.receive.prepare()         # the restore's start-up, paid while the source runs

    def _open(self, a, b):
        from crpy.images import digest

        name = _check_name(self._payload(b).decode(errors="replace"), "file")
        if self.file is not None:
            raise Refused(f"OPEN {name} while {self.file.name} is open")
        if not digest.is_image_name(name) or name == digest.FILE_NAME:
            raise Refused(f"refused file name {name!r}: not an image")
        if self.recorder is None:
            self.recorder = digest.Recorder(self.dir)
        self.file = _OpenFile(self.dir, name, self.algo, self.recorder)
        self.created.append(self.file.path)

    def _data(self, a, b):
        f = self._need_file("DATA")
        if self.pipe is None:
            self.pipe = os.pipe2(os.O_CLOEXEC)
            try:
                import fcntl

                fcntl.fcntl(self.pipe[1], _F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        left, sock = b, self.sock.fileno()
        while left:
            n = os.splice(sock, self.pipe[1], min(left, PIPE_SIZE))
            if n <= 0:
                raise P.StreamError(f"{f.name}: the stream ended after {f.written} bytes, "
                                    f"{left} short of the {b} announced (truncated)")
            _splice_exactly(self.pipe[0], f.fd, n)
            left -= n
            f.written += n
            # hashed a few MiB at a time: a socket read brings tens of KiB, a mapping each costs
            if f.written - f.size >= HASH_STEP or not left:
                f.hash_region(f.size, f.written - f.size)
                f.size = f.written
        self.bytes += b

    def _patch(self, a, b):
        f = self._need_file("PATCH")
        data = self._payload(b)
        if a + len(data) > f.size:
            raise Refused(f"{f.name}: PATCH of {len(data)} bytes at {a} beyond its {f.size} bytes")
        os.pwrite(f.fd, data, a)
        f.digest.update_patch(a, data)
        f.follow.rewritten(a, len(data))

    def _close(self, a, b):
        f = self._need_file("CLOSE")
        got = f.digest.value()
        self.file = None
        f.close(complete=got == a)
        if got != a:
            raise Refused(f"{f.name}: damaged on the way: the {f.size} bytes received hash to {got:#x}, "
                          f"the sender's to {a:#x}")

    def _link(self, a, b):
        from crpy.images.chain import PARENT_LINK

        name, _, target = self._payload(b).decode(errors="replace").partition("\0")
        if name != PARENT_LINK or not target or target.startswith("/") or "\0" in target:
            raise Refused(f"refused link {name!r} -> {target!r}: only a relative parent link")
        path = os.path.join(self.dir, name)
        os.symlink(target, path)
        self.created.append(path)

    def _fin(self, a, b):
        from crpy.images import digest

        if self.file is not None:
            raise Refused(f"FIN while {self.file.name} is open")
        recorder, self.recorder = self.recorder or digest.Recorder(self.dir), None
        count = recorder.write()       # hashes only what was not followed (links are not images)
        self.created.append(os.path.join(self.dir, digest.FILE_NAME))
        log.info("Page server: %d images in %s (%d bytes received)", count, self.dir, self.bytes)
        self._reply(P.OK, count)
        if self.receive is None:
            self.created = []          # kept: the dump is complete
            return "end"

    def _restore(self, a, b):
        if self.receive is None:
            raise Refused("RESTORE is for crpy receive, not crpy page-server")
        # payload: the subdirectory, then (crpy migrate --lazy) "\0lazy\0ADDR\0PORT\0NAME=SIZE..."
        # or (a lazy restore from the images here) "\0local"
        name, *lazy = self._payload(b).decode(errors="replace").split("\0")
        if lazy and not ((lazy[0] == "lazy" and len(lazy) >= 3) or lazy == ["local"]) \
                or any("\t" in f or "\n" in f for f in lazy):
            raise Refused(f"malformed RESTORE request {lazy[:3]!r}")
        pid = self.receive.restore(os.path.join(self.root, _check_name(name, "directory")),
                                   lazy or None)  # Refused if it failed
        self._reply(P.OK, pid)

    def _done(self, a, b):
        if self.receive is not None:
            self.receive.finish()      # a lazy restore here: every page in (Refused if not)
        self.created = []              # the migration is over: the images stay, as criu's do
        self._reply(P.OK)
        return "end"

    def _need_file(self, what):
        if self.file is None:
            raise Refused(f"{what} with no file open")
        return self.file

    def _fail(self, line):
        """Tell the sender (best effort), then take back everything this session made."""
        log.error("Page server: %s", line)
        if self.receive is not None:
            self.receive.abandon()
        try:
            self._reply(P.ERR, 0, line.encode()[:P.MAX_PAYLOAD])
        except OSError:
            pass
        if self.file is not None:
            self.file.close(complete=False)
            self.file = None
        for path in reversed(self.created):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    import shutil

                    shutil.rmtree(path)       # made by this session: all in it is ours (restore.log ...)
                elif os.path.lexists(path):
                    os.unlink(path)
            except OSError as e:
                log.error("Page server: cannot remove %s: %s", path, e.strerror)
        self.created = []


def _splice_exactly(src, dst, count):
    while count:
        n = os.splice(src, dst, count)
        if n <= 0:
            raise OSError(0, f"splice returned {n} with {count} bytes left")
        count -= n


def listen(address, port):
    """A listening TCP socket; (socket, the address and port it got)."""
    family = socket.AF_INET6 if address and ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError as e:
        sock.close()
        from crpy.errors import OptionError

        raise OptionError(f"cannot listen on {address or '*'}:{port}: {e.strerror or e}",
                          "choose another --port or --address") from None
    sock.listen(1)
    return sock, sock.getsockname()[:2]


def accept(listener, timeout=None):
    listener.settimeout(timeout)
    conn, peer = listener.accept()
    conn.settimeout(None)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    # a sender that stalls must not hold the server for ever
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 120, 0))
    return conn, peer


def announce(where, status_fd):
    """Say where we listen: a line on stdout, and criu's --status-fd byte once ready."""
    print(f"crpy: listening on {where[0]}:{where[1]}", flush=True)
    if status_fd is not None:
        os.write(status_fd, b"\0")
        os.close(status_fd)


def daemonize():
    """criu's -d/--daemon: the parent exits once the socket listens, the child serves."""
    if os.fork():
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):              # whoever started us waits for none of them: the log has it all
        os.dup2(null, fd)
    os.close(null)


def run_page_server(images_dir, address, port, daemon=False, status_fd=None):
    """Serve one dump into images_dir; 0 once it is complete, else CrpyError (one line)."""
    from crpy.errors import ImageError

    if not os.path.isdir(images_dir):
        raise ImageError(images_dir, "not a directory", hint="create the -D directory first")
    listener, where = listen(address, port)
    announce(where, status_fd)
    if daemon:
        daemonize()
    with listener:
        conn, peer = accept(listener)
    log.info("Page server: connection from %s:%d into %s", peer[0], peer[1], images_dir)
    with conn:
        try:
            Session(conn, images_dir).serve()
        except Refused as e:
            from crpy.errors import CrpyError

            raise CrpyError(f"page server: {e}", "the sender was told; its dump failed") from None
    return 0
