"""crpy's page server: page data of a dump or pre-dump sent over TCP to another directory.

  protocol.py   the wire format (crpy's own, small) and the stream digest both ends compute
  sink.py       the dumping side: pages spliced from the parasite's page pipe to the socket,
                the other images sent at the end of the dump, then the server's verdict
  server.py     `crpy page-server` (and the session under `crpy receive`): socket -> files
  here          which images directory sends to which server: a dict, so that a dump without
                --page-server imports nothing of the rest (start-up time)

    with session(opts): run the dump       # dump/pre-dump --page-server --address A --port N
    attach(images_dir, client) / detach(images_dir)       # crpy migrate: one connection, many dumps
    pages_stream(images_dir, path) / finish(images_dir)   # the dump's page step / its last image

What goes where: the dumping side writes every image locally as a plain dump does, except the
private page data (pages-N.img of each task), which goes from the page pipe to the socket, never
through Python objects: spliced into a scratch memfd, hashed, sent with send(2) from its mapping.
Why not splice(2) from the page pipe to the socket: the pipe holds references to the task's own
pages (vmsplice), and TCP keeps them until the data leaves; what is sent is what the page holds
then, not what was hashed.  Measured: with splice to the socket, 1 in 2 dumps of dirtymem had a
stream digest mismatch (the parasite's stack frame, put back at cure, changed a page still in
flight); for a pre-dump, whose tree runs, any page could change.  The copy costs one memcpy.  At the end of the dump (once crpy-digests is
written, before the tree is killed) the other images are sent too, with sendfile, so the server's
directory is a complete dump that `crpy restore -D` takes as it is; the server writes its own
crpy-digests there.  Every file's stream carries a digest computed by the sender over the bytes it
sent; the server computes the same over the bytes it wrote and refuses a mismatch or a truncated
stream (it removes what it wrote and tells the sender, whose dump then fails in one line, the tree
left running).
"""

import contextlib
import os

_sessions = {}                     # realpath of an images dir -> crpy.pageserver.sink.Client


def _key(images_dir):
    return os.path.realpath(images_dir)


def attach(images_dir, client):
    _sessions[_key(images_dir)] = client


def detach(images_dir):
    return _sessions.pop(_key(images_dir), None)


def pages_stream(images_dir, path):
    """A sink.RemotePages for pages-N.img when images_dir's dump sends to a page server, else None."""
    client = _sessions.get(_key(images_dir)) if _sessions else None
    if client is None or client.pages_local:   # crpy migrate --lazy: pages stay here, served later
        return None
    from crpy.pageserver.sink import RemotePages

    return RemotePages(client, images_dir, path)


def finish(images_dir):
    """The dump's crpy-digests is written: the server gets the rest and says if all arrived."""
    client = _sessions.get(_key(images_dir)) if _sessions else None
    if client is not None:
        client.finish(images_dir)


@contextlib.contextmanager
def session(opts):
    """`dump/pre-dump --page-server --address A --port N`: one connection for this dump."""
    if not getattr(opts, "page_server", False):
        yield None
        return
    if not opts.port:
        from crpy.errors import OptionError

        raise OptionError("--page-server needs --port (and --address, default localhost)",
                          "give the address and port `crpy page-server` listens on")
    from crpy.pageserver.sink import Client

    client = Client.connect(opts.address or "localhost", opts.port)
    attach(opts.images_dir, client)
    try:
        yield client
    finally:
        detach(opts.images_dir)
        client.close()             # before FIN (a failure): the server drops what it got
