"""The dumping side of the page server: a page sink that is a socket, not a local file.

The dump's page step (crpy.dump.pages) asks pages_stream(images_dir, path) for each pages-N.img;
with a page server session it gets a RemotePages, which the parasite's drain hands the page pipe:
splice(2) moves the pages into a scratch memfd (one kernel copy, 4 MiB at a time), they are
hashed there (the stream digest) and sent from its mapping with send(2) (a second kernel copy, into
the socket's buffers), and with keep_local (crpy migrate) also copied into the local pages-N.img.
Nothing passes through Python objects.  finish() is called when crpy-digests is written (before the tree is killed): it
sends the other images and the parent link, then waits for the server's verdict; a refusal fails
the dump in one line and the tree is left as it was.

Which dump sends to which server: the registry in crpy.pageserver (session, attach, detach).
"""

import os

from crpy.pageserver import protocol as P

COPY_CHUNK = 4 << 20               # bytes copied out of the page pipe at a time
_sessions = {}                     # realpath of an images dir -> Client


def _dump_error(message):
    from crpy.errors import DumpError

    return DumpError(message, "check that the page server runs and its log; the tree was left running")


def _set_timeouts(sock, send_s, recv_s):
    import socket
    import struct

    for opt, sec in ((socket.SO_SNDTIMEO, send_s), (socket.SO_RCVTIMEO, recv_s)):
        sock.setsockopt(socket.SOL_SOCKET, opt, struct.pack("ll", sec, 0))


class Client:
    """One connection to a page server (or to `crpy receive`)."""

    def __init__(self, sock, where, keep_local=False):
        self.sock, self.where, self.keep_local = sock, where, keep_local
        self.algo = P.default_algo()
        self.streamed = set()          # names already sent in the current directory
        self.bytes_sent = 0
        self._scratch = None
        self.pages_local = False       # crpy migrate --lazy's final dump: pages-N.img not sent

    @classmethod
    def connect(cls, address, port, keep_local=False):
        try:
            sock = P.connect(address, port)
        except P.StreamError as e:
            raise _dump_error(str(e)) from None
        sock.settimeout(None)          # blocking: splice/sendfile need it; the timeouts are the kernel's
        import socket

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, COPY_CHUNK)
        _set_timeouts(sock, 60, 600)
        client = cls(sock, f"{address}:{port}", keep_local)
        client.call(P.HELLO, P.VERSION, client.algo.encode(), "HELLO")
        return client

    # ---- messages ----

    def send(self, cmd, a=0, payload=b""):
        try:
            P.send(self.sock, cmd, a, payload)
        except OSError as e:
            raise self._failed(e) from None

    def call(self, cmd, a=0, payload=b"", what=None):
        """Send a message that the server answers; its `a`, or DumpError with the server's line."""
        self.send(cmd, a, payload)
        try:
            return P.expect_ok(self.sock, what or P.NAMES[cmd])
        except P.StreamError as e:
            raise _dump_error(f"page server {self.where}: {e}") from None

    def _failed(self, err):
        """A send failed: the server has most likely said why (ERR) before it closed."""
        reason = err.strerror or str(err)
        try:
            _set_timeouts(self.sock, 1, 1)
            cmd, _, payload = P.recv(self.sock)
            if cmd == P.ERR:
                reason = payload.decode(errors="replace")
        except (OSError, P.StreamError):
            pass
        return _dump_error(f"page server {self.where}: {reason}")

    def subdir(self, name):
        """crpy receive: the next files go into the server's DIR/name."""
        self.send(P.SUBDIR, 0, name.encode())
        self.streamed = set()

    # ---- data ----

    def scratch(self):
        """(memfd, its read-only mapping): where page data is copied out of the page pipe."""
        if self._scratch is None:
            import mmap

            fd = os.memfd_create("crpy-page-copy", os.MFD_CLOEXEC)
            os.ftruncate(fd, COPY_CHUNK)
            self._scratch = (fd, mmap.mmap(fd, COPY_CHUNK, mmap.MAP_SHARED, mmap.PROT_READ))
        return self._scratch

    def send_file(self, path):
        """A whole local file (an image written by the dump): sendfile to the socket."""
        import mmap

        name = os.path.basename(path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            digest = P.StreamHash(self.algo)
            self.send(P.OPEN, 0, name.encode())
            try:
                P.send_data_header(self.sock, size)
                done = 0
                while done < size:
                    n = os.sendfile(self.sock.fileno(), fd, done, size - done)
                    if n <= 0:
                        raise OSError(0, f"{name} shrank while it was sent")
                    done += n
            except OSError as e:
                raise self._failed(e) from None
            if size:
                with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                    digest.update(m)
            self.send(P.CLOSE, digest.value())
            self.bytes_sent += size
            self.streamed.add(name)
        finally:
            os.close(fd)

    def finish(self, images_dir):
        """The dump's images are all written: send those not sent yet and the parent link, then
        FIN; returns once the server has checked and kept everything (DumpError if not)."""
        from crpy.images import digest
        from crpy.images.chain import PARENT_LINK
        from crpy.log import log

        for entry in sorted(os.scandir(images_dir), key=lambda e: e.name):
            if entry.name == PARENT_LINK and entry.is_symlink():
                self.send(P.LINK, 0, f"{PARENT_LINK}\0{os.readlink(entry.path)}".encode())
            elif (entry.is_file(follow_symlinks=False) and digest.is_image_name(entry.name)
                  and entry.name != digest.FILE_NAME and entry.name not in self.streamed
                  and not (self.pages_local and entry.name.startswith("pages-"))):
                self.send_file(entry.path)
        self.call(P.FIN, what="the end of the dump")
        log.info("Page server %s has the images of %s (%d bytes sent)", self.where, images_dir, self.bytes_sent)

    def close(self):
        if self._scratch is not None:
            self._scratch[1].close()
            os.close(self._scratch[0])
            self._scratch = None
        self.sock.close()


class RemotePages:
    """One pages-N.img going to the page server: the page sink the dump's page step writes to
    (splice_from / write_bytes / pwrite, then close or abandon)."""

    def __init__(self, client, images_dir, path):
        self.client, self.name = client, os.path.basename(path)
        self.digest, self.size = P.StreamHash(client.algo), 0
        self.local = self.follow = None
        client.send(P.OPEN, 0, self.name.encode())
        if client.keep_local:
            from crpy.dump.images import follow_image
            from crpy.pagesio import open_out

            self.local = open_out(path)
            self.follow = follow_image(images_dir, path)

    def splice_from(self, pipe_r, nbytes):
        """nbytes from the page pipe: spliced into the scratch memfd, hashed there, sent from it
        (and kept).  Not spliced to the socket itself: TCP would hold references to the task's
        pages and send what they hold when it gets to them, not what was hashed (see __init__)."""
        scratch, view = self.client.scratch()
        try:
            P.send_data_header(self.client.sock, nbytes)
            left = nbytes
            while left:
                k = min(left, COPY_CHUNK)
                _splice_exactly(pipe_r, scratch, k, offset_dst=0)
                with memoryview(view) as whole, whole[:k] as piece:
                    self.digest.update(piece)
                    self.client.sock.sendall(piece)
                if self.local is not None:
                    _sendfile_exactly(self.local, scratch, k)
                left -= k
        except OSError as e:
            raise self.client._failed(e) from None
        self.size += nbytes
        self.client.bytes_sent += nbytes

    def write_bytes(self, data):
        """Pages the dumper read itself (PROT_NONE memory: crpy.dump.pages._copy_unreadable)."""
        try:
            P.send_data_header(self.client.sock, len(data))
            self.client.sock.sendall(data)
        except OSError as e:
            raise self.client._failed(e) from None
        self.digest.update(data)
        if self.local is not None:
            os.write(self.local, data)
        self.size += len(data)

    def pwrite(self, data, offset):
        self.client.send(P.PATCH, offset, bytes(data))
        self.digest.update_patch(offset, data)
        if self.local is not None:
            os.pwrite(self.local, data, offset)
            self.follow.rewritten(offset, len(data))

    def rewritten(self, offset, length):
        pass                           # pwrite() has told the stream and the local copy

    def close(self):
        self.client.send(P.CLOSE, self.digest.value())
        self.client.streamed.add(self.name)
        if self.local is not None:
            os.close(self.local)
            self.follow.close()

    def abandon(self):
        if self.local is not None:
            self.follow.abandon()
            os.close(self.local)


def _splice_exactly(src, dst, count, offset_dst=None):
    while count:
        n = os.splice(src, dst, count) if offset_dst is None else os.splice(src, dst, count, offset_dst=offset_dst)
        if n <= 0:
            raise OSError(0, f"splice returned {n} with {count} bytes left")
        count -= n
        if offset_dst is not None:
            offset_dst += n


def _sendfile_exactly(dst, src, count):
    done = 0
    while done < count:
        n = os.sendfile(dst, src, done, count - done)
        if n <= 0:
            raise OSError(0, "sendfile to the local pages image stopped short")
        done += n
