"""crpy's page server: page data of a dump or pre-dump sent over TCP to another directory.

  protocol.py   the wire format (crpy's own, small) and the stream digest both ends compute
  sink.py       the dumping side: pages spliced from the parasite's page pipe to the socket,
                the other images sent at the end of the dump, then the server's verdict
  server.py     `crpy page-server` (and the session under `crpy receive`): socket -> files

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
