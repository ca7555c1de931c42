"""The page server's wire format (crpy's own; criu's page-server protocol is not spoken).

Every message is a 24-byte header  <magic u32, command u32, a u64, b u64>  followed by b bytes of
payload, except DATA, whose b raw bytes of file data follow (spliced, not read into Python).

    HELLO   a=version, payload: the digest algorithm      -> OK | ERR
    OPEN    payload: a file name (no '/')                 start writing that file
    DATA    b bytes of the file follow, appended
    PATCH   a=offset, payload: bytes written again there  (the parasite's stack frame put back)
    CLOSE   a=the sender's digest of the file's stream    (checked; no reply unless it differs)
    LINK    payload: "parent\\0../REL"                     the pre-dump chain's parent link
    SUBDIR  payload: a directory name (crpy receive)      later files go into DIR/NAME
    FIN     the dump is complete                          -> OK | ERR  (crpy-digests written)
    RESTORE payload: the subdirectory (crpy receive)      -> OK a=root pid | ERR
            [+ "\0lazy\0ADDR\0PORT\0NAME=SIZE..."]       crpy migrate --lazy (crpy.migrate.lazy)
    DONE    the migration is over (crpy receive)          -> OK
    ERR     payload: one line, why the server refuses     (then it closes the connection)
    GET     a=offset, payload: "NAME\0LENGTH"             -> DATA of LENGTH bytes of pages image NAME
                                                          (relative to the served dump) | ERR;
                                                          criu's PS_IOV_GET, for `crpy lazy-pages
                                                          --page-server` (crpy.pageserver.serve)

A file's stream digest covers, in order, each DATA's bytes and each PATCH's offset (8 bytes,
little endian) and bytes: both ends compute it over the same bytes, the sender over what it sent
(a kernel copy of the page pipe), the server over what it wrote (its page cache), so damage on
the way is caught and named.
"""

import struct
import zlib

MAGIC = 0x53505243                      # "CRPS"
VERSION = 1
HEADER = struct.Struct("<IIQQ")
MAX_PAYLOAD = 1 << 20                   # any message but DATA
(HELLO, OPEN, DATA, PATCH, CLOSE, LINK, SUBDIR, FIN, RESTORE, DONE, OK, ERR, GET) = range(1, 14)
NAMES = {v: k for k, v in dict(HELLO=HELLO, OPEN=OPEN, DATA=DATA, PATCH=PATCH, CLOSE=CLOSE, LINK=LINK,
                                SUBDIR=SUBDIR, FIN=FIN, RESTORE=RESTORE, DONE=DONE, OK=OK, ERR=ERR,
                                GET=GET).items()}


class StreamError(Exception):
    """The peer broke the protocol or went away; str() is one line."""


def send(sock, cmd, a=0, payload=b""):
    sock.sendall(HEADER.pack(MAGIC, cmd, a, len(payload)) + payload)


def send_data_header(sock, length):
    sock.sendall(HEADER.pack(MAGIC, DATA, 0, length))


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            got = sock.recv(n - len(buf))
        except OSError as e:
            raise StreamError(f"connection lost: {e.strerror or e}") from None
        if not got:
            raise StreamError(f"connection closed after {len(buf)} of {n} bytes of a message")
        buf += got
    return bytes(buf)


def recv_header(sock):
    """(cmd, a, b) of the next message; StreamError on a bad magic."""
    magic, cmd, a, b = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != MAGIC or cmd not in NAMES:
        raise StreamError(f"not a crpy page server message (magic {magic:#x}, command {cmd})")
    return cmd, a, b


def recv(sock):
    """(cmd, a, payload) of a message other than DATA."""
    cmd, a, b = recv_header(sock)
    if cmd == DATA or b > MAX_PAYLOAD:
        raise StreamError(f"unexpected {NAMES[cmd]} message of {b} bytes")
    return cmd, a, recv_exact(sock, b) if b else b""


def expect_ok(sock, what):
    """Wait for the reply to `what`: its `a` on OK; StreamError with the server's line on ERR."""
    cmd, a, payload = recv(sock)
    if cmd == ERR:
        raise StreamError(payload.decode(errors="replace"))
    if cmd != OK:
        raise StreamError(f"the server answered {what} with {NAMES[cmd]}")
    return a


def default_algo():
    """The stream's digest: xxh3_64 where installed (the sender hashes its mapped page cache, where
    xxh3 is the fastest); crpy-digests' own hash (crc32c, or crc32) otherwise."""
    from crpy.images import digest

    return "xxh3_64" if digest._xxh3_64() is not None else digest.default_algo()


class StreamHash:
    """The running digest of one file's stream: xxh3_64 (python-xxhash), crc32c or crc32."""

    def __init__(self, algo):
        self.algo = algo
        self._h, self._crc, self._fn = None, 0, zlib.crc32
        if algo == "xxh3_64":
            import xxhash

            self._h = xxhash.xxh3_64()
        elif algo == "crc32c":
            from crpy.kernel.crc32c import crc32c

            self._fn = crc32c
        elif algo != "crc32":
            raise StreamError(f"digest algorithm {algo!r} is not available here")

    def update(self, buf):
        if self._h is not None:
            self._h.update(buf)
        else:
            self._crc = self._fn(buf, self._crc)

    def update_patch(self, offset, data):
        self.update(struct.pack("<Q", offset))
        self.update(data)

    def value(self):
        return self._h.intdigest() if self._h is not None else self._crc


def connect(address, port, timeout=30):
    import socket

    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as e:
        raise StreamError(f"cannot connect to the page server at {address}:{port}: {e.strerror or e}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
