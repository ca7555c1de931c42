"""The page server the other way round: pages of a dump on this side, read by `crpy lazy-pages
--page-server` on the destination (criu's PS_IOV_GET).  `crpy page-server -D DIR --lazy-pages`,
and `crpy migrate --lazy` after its final dump.

One connection is served at a time; a session is HELLO, then any number of GET (a=offset,
payload "NAME\\0LENGTH": LENGTH bytes of the pages image NAME, relative to DIR, answered by a DATA
message sent with sendfile from the image) and DONE, which ends the serving (the destination has
every page).  Only pages images of DIR and of its pre-dump parents (the `parent` links) are
served: NAME is resolved and anything else is refused with ERR and one line.

    PageServing(images_dir).serve(sock) -> True once DONE came, False if the peer went away
    run_serving(images_dir, address, port, daemon, status_fd) -> exit code
"""

import os

from crpy.log import log
from crpy.pageserver import protocol as P


class PageServing:
    """The pages images of one dump (and its parents), served by GET."""

    def __init__(self, images_dir, held=None):
        self.root = os.path.realpath(images_dir)
        self.dirs = _chain_dirs(self.root)
        self.fds = {}                  # name -> (an open fd of the image, its path)
        self.bytes = 0
        self.held = held               # crpy.dump.held_pages.HeldDump: images still in page pipes

    def _image_fd(self, name):
        if name in self.fds:
            return self.fds[name]
        from crpy.images.pages import is_pages_image

        path = os.path.realpath(os.path.join(self.root, name))
        if os.path.dirname(path) not in self.dirs or not is_pages_image(os.path.basename(path)):
            raise P.StreamError(f"refused GET of {name!r}: not a pages image of {self.root} or its parents")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise P.StreamError(f"GET {name}: {e.strerror}") from None
        self.fds[name] = fd, path
        return fd, path

    def _get(self, sock, offset, payload):
        name, _, length = payload.decode(errors="replace").partition("\0")
        if not length.isdigit():
            raise P.StreamError(f"malformed GET {payload[:80]!r}")
        length = int(length)
        fd, path = self._image_fd(name)
        if offset + length > os.fstat(fd).st_size:
            raise P.StreamError(f"GET {name}: {length} bytes at offset {offset} beyond its end")
        if self.held is not None:
            self.held.ensure(path, offset, length)
        P.send_data_header(sock, length)
        done = 0
        while done < length:
            n = os.sendfile(sock.fileno(), fd, offset + done, length - done)
            if n <= 0:
                raise OSError(0, f"{name} shrank while it was served")
            done += n
        self.bytes += length

    def serve(self, sock):
        """Answer GETs until DONE (True) or the peer goes away (False)."""
        import socket

        # each GET is a round trip: Nagle's delay (against the peer's delayed ACK) would cost 40 ms
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) if sock.family != socket.AF_UNIX else None
        try:
            cmd, a, payload = P.recv(sock)
            if cmd != P.HELLO or a != P.VERSION:
                raise P.StreamError(f"expected HELLO version {P.VERSION}, got {P.NAMES[cmd]} {a}")
            P.send(sock, P.OK)
            while True:
                if not sock.recv(1, socket.MSG_PEEK):
                    log.info("Page server: the peer closed (%d bytes served so far)", self.bytes)
                    return False       # at a message boundary: a peer done for now (a prefetch)
                cmd, a, payload = P.recv(sock)
                if cmd == P.GET:
                    self._get(sock, a, payload)
                elif cmd == P.DONE:
                    P.send(sock, P.OK)
                    log.info("Page server: every page served (%d bytes)", self.bytes)
                    return True
                else:
                    raise P.StreamError(f"{P.NAMES[cmd]} while serving pages (GET or DONE expected)")
        except P.StreamError as e:
            log.error("Page server: %s", e)
            try:
                P.send(sock, P.ERR, 0, str(e).encode()[:P.MAX_PAYLOAD])
            except OSError:
                pass
            return False
        except OSError as e:
            log.error("Page server: the lazy-pages peer went away: %s", e.strerror or e)
            return False

    def close(self):
        for fd, _ in self.fds.values():
            os.close(fd)
        self.fds = {}


def _chain_dirs(root):
    """root and the directories its `parent` links lead to (a pre-dump chain)."""
    from crpy.images.chain import PARENT_LINK

    dirs, d = [], root
    while d not in dirs:
        dirs.append(d)
        link = os.path.join(d, PARENT_LINK)
        if not os.path.islink(link):
            break
        d = os.path.realpath(os.path.join(d, os.readlink(link)))
    return dirs


def serve_connections(listener, serving):
    """Accept lazy-pages peers one after the other until one says DONE."""
    from crpy.pageserver.server import accept

    while True:
        conn, peer = accept(listener)
        log.info("Page server: lazy-pages peer %s:%d", peer[0], peer[1])
        with conn:
            if serving.serve(conn):
                return


def run_serving(images_dir, address, port, daemon=False, status_fd=None):
    """`crpy page-server -D DIR --lazy-pages`: serve DIR's pages until a peer has them all."""
    from crpy.errors import ImageError
    from crpy.pageserver.server import announce, daemonize, listen

    if not os.path.isdir(images_dir):
        raise ImageError(images_dir, "not a directory", hint="give the dump's -D directory")
    serving = PageServing(images_dir)
    listener, where = listen(address, port)
    announce(where, status_fd)
    if daemon:
        daemonize()
    try:
        with listener:
            serve_connections(listener, serving)
    finally:
        serving.close()
    return 0
