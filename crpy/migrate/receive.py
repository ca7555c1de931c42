"""`crpy receive --listen PORT [--address A] -D DIR`: the destination of `crpy migrate`.

One connection: each round of the source arrives in DIR/NAME (a page server session,
crpy.pageserver.server, with SUBDIR), checked file by file; RESTORE restores DIR/dump (through its
parent chain) with `crpy restore -d` and answers with the root's pid; DONE ends it.  If anything
fails before DONE (the source goes away, a damaged stream, the restore), every directory this
session made is removed, the source is told, and receive exits 1 with one line: nothing is left
behind (a failed restore kills what it made: crpy restore's own guarantee).
"""

import os
import subprocess
import sys

from crpy.log import log


class _Restorer:
    """What RESTORE runs: a detached `crpy restore` of one directory, as its own process (its
    tree then belongs to whoever reaps for us, as after criu restore -d)."""

    def __init__(self, skip_integrity=False):
        self.skip_integrity = skip_integrity

    def restore(self, images_dir):
        from crpy.pageserver.server import Refused

        pidfile = os.path.join(images_dir, "restored.pid")
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=repo + (os.pathsep + os.environ["PYTHONPATH"]
                                                   if os.environ.get("PYTHONPATH") else ""))
        argv = [sys.executable, "-m", "crpy", "restore", "-D", images_dir, "-d", "--pidfile", pidfile,
                "-v4", "-o", "restore.log"] + (["--skip-integrity"] if self.skip_integrity else [])
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=600)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.strip()]
            raise Refused(f"the restore on the destination failed: {lines[-1] if lines else proc.returncode}")
        with open(pidfile) as f:
            pid = int(f.read())
        log.info("Receive: restored %s as pid %d", images_dir, pid)
        return pid


def run_receive(images_dir, address, port, status_fd=None):
    from crpy.errors import CrpyError
    from crpy.pageserver.server import Refused, Session, accept, announce, listen

    os.makedirs(images_dir, exist_ok=True)
    listener, where = listen(address, port)
    announce(where, status_fd)
    with listener:
        conn, peer = accept(listener)
    log.info("Receive: migration from %s:%d into %s", peer[0], peer[1], images_dir)
    with conn:
        try:
            Session(conn, images_dir, receive=_Restorer()).serve()
        except Refused as e:
            raise CrpyError(f"receive: {e}", "the source was told; it resumes (or was restored there)") from None
    return 0
