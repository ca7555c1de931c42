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
    """What RESTORE runs: crpy.migrate.restore_worker, a process of its own started at the first
    round (prepare), so its start-up is not in the frozen time; the restored tree is detached
    from it and belongs to whoever reaps for us, as after `criu restore -d`."""

    def __init__(self):
        self.worker = None

    def prepare(self):
        if self.worker is not None:
            return
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=repo + (os.pathsep + os.environ["PYTHONPATH"]
                                                   if os.environ.get("PYTHONPATH") else ""))
        self.worker = subprocess.Popen([sys.executable, "-m", "crpy.migrate.restore_worker"], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)

    def restore(self, images_dir, lazy=None):
        """lazy: (address, port, NAME=SIZE ...) of crpy migrate --lazy (crpy.migrate.lazy)."""
        from crpy.pageserver.server import Refused

        self.prepare()
        worker, self.worker = self.worker, None
        try:
            worker.stdin.write("\t".join([images_dir, *(["lazy", *lazy] if lazy else [])]) + "\n")
            worker.stdin.close()
            answer = ""
            for line in worker.stdout:
                if line.startswith(("pid ", "error ")):
                    answer = line.strip()
                    break
        except OSError as e:
            answer = f"error the restore worker is gone: {e.strerror}"
        status = worker.wait()
        if not answer.startswith("pid "):
            why = answer.removeprefix("error ") or f"the restore worker ended with {status}"
            raise Refused(f"the restore on the destination failed: {why}")
        pid = int(answer.split()[1])
        log.info("Receive: restored %s as pid %d", images_dir, pid)
        return pid

    def abandon(self):
        """The session failed: the worker goes without restoring anything."""
        worker, self.worker = self.worker, None
        if worker is not None:
            try:
                worker.stdin.close()
            except OSError:
                pass
            worker.wait()


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
