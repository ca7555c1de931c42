"""Where the lazy-pages daemon gets page bytes: the images here (LocalPages) or a page server
serving them on the source host (RemotePages, crpy.pageserver.serve).

A source answers address(name, offset, length): the address, in the daemon's memory, of `length`
bytes of pages image `name` (relative to the images dir, e.g. "pages-1.img" or "pre1/pages-1.img")
from `offset`, valid until the next call.  LocalPages maps the images read-only (copy-on-write
private: UFFDIO_COPY reads straight from the page cache).  A source that cannot deliver raises
SourceGone: the daemon then kills the tasks waiting for those pages rather than let them hang.
RemotePages asks the page server with GET and receives the bytes into a buffer of its own; a
server that is gone, refuses or stalls (RECV_TIMEOUT_S) is SourceGone.
"""

import ctypes
import mmap
import os

from crpy.errors import CrpyError


class SourceGone(CrpyError):
    """The pages cannot be had any more (image gone or short, page server gone)."""


class LocalPages:
    def __init__(self, images_dir):
        self.images_dir = images_dir
        self._maps = {}

    def address(self, name, offset, length):
        m = self._maps.get(name)
        if m is None:
            path = os.path.join(self.images_dir, name)
            try:
                with open(path, "rb") as f:
                    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError) as e:
                raise SourceGone(f"pages image {path}: {e}") from None
            self._maps[name] = m
        if offset + length > len(m):
            raise SourceGone(f"pages image {name} ends at {len(m)}, a page at offset {offset} is missing")
        return ctypes.addressof(ctypes.c_char.from_buffer(m, offset))


RECV_TIMEOUT_S = 30


class RemotePages:
    """Pages fetched from `crpy page-server --lazy-pages` (or `crpy migrate --lazy`'s source)."""

    def __init__(self, address, port):
        import socket
        import struct

        from crpy.pageserver import protocol as P

        self.P, self.where = P, f"{address}:{port}"
        try:
            self.sock = P.connect(address, port)
            self.sock.settimeout(None)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", RECV_TIMEOUT_S, 0))
            P.send(self.sock, P.HELLO, P.VERSION, P.default_algo().encode())
            P.expect_ok(self.sock, "HELLO")
        except (P.StreamError, OSError) as e:
            raise SourceGone(f"page server {self.where}: {e}") from None
        self._buf = None
        self.fetched = 0

    def _buffer(self, length):
        if self._buf is None or len(self._buf) < length:
            if self._buf is not None:
                self._buf.close()
            self._buf = mmap.mmap(-1, max(length, 1 << 20))
        return self._buf

    def address(self, name, offset, length):
        P = self.P
        buf = self._buffer(length)
        try:
            P.send(self.sock, P.GET, offset, f"{name}\0{length}".encode())
            cmd, _, b = P.recv_header(self.sock)
            if cmd == P.ERR:
                raise P.StreamError(P.recv_exact(self.sock, min(b, P.MAX_PAYLOAD)).decode(errors="replace"))
            if cmd != P.DATA or b != length:
                raise P.StreamError(f"answered GET with {P.NAMES[cmd]} of {b} bytes, not {length}")
            with memoryview(buf) as view:
                got = 0
                while got < length:
                    n = self.sock.recv_into(view[got:length])
                    if not n:
                        raise P.StreamError(f"connection closed after {got} of {length} bytes of {name}")
                    got += n
        except (P.StreamError, OSError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise SourceGone(f"page server {self.where}: {why} (GET {name} at {offset})") from None
        self.fetched += length
        return ctypes.addressof(ctypes.c_char.from_buffer(buf))

    def done(self):
        """Every page is in: the server may stop."""
        P = self.P
        try:
            P.send(self.sock, P.DONE)
            P.expect_ok(self.sock, "DONE")
        except (P.StreamError, OSError):
            pass
        self.sock.close()


def open_source(images_dir, page_server):
    """The source for `crpy lazy-pages`: the images in images_dir, or (address, port) of a page
    server serving them (`crpy page-server --lazy-pages`)."""
    if page_server is None:
        return LocalPages(images_dir)
    address, port = page_server
    if not port:
        from crpy.errors import OptionError

        raise OptionError("crpy lazy-pages --page-server needs --port (and --address, default localhost)",
                          "give the address and port `crpy page-server --lazy-pages` listens on")
    return RemotePages(address or "localhost", port)
