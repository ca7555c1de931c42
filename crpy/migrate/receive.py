"""`crpy receive --listen PORT [--address A] -D DIR`: the destination of `crpy migrate`.

One connection: each round of the source arrives in DIR/NAME (a page server session,
crpy.pageserver.server, with SUBDIR), checked file by file; RESTORE restores DIR/dump (through its
parent chain) with `crpy restore -d` and answers with the root's pid (RESTORE "local": with
--lazy-pages from these images, served by a `crpy lazy-pages` the restore worker forks; DONE is
answered once it has every page in, refused if it failed); DONE ends it.  If anything
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
        self.serving = None            # the worker that restored, until it exits (and, serving_lazy:
        self.serving_lazy = False      # its lazy-pages daemon for the images here has every page in)

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
        """lazy: ("lazy", address, port, NAME=SIZE ...) of crpy migrate --lazy, or ("local",): a
        lazy restore from the images here (crpy.migrate.lazy)."""
        from crpy.pageserver.server import Refused

        self.prepare()
        worker, self.worker = self.worker, None
        try:
            worker.stdin.write("\t".join([images_dir, *(lazy or [])]) + "\n")
            worker.stdin.close()
            answer = ""
            for line in worker.stdout:
                if line.startswith(("pid ", "error ")):
                    answer = line.strip()
                    break
        except OSError as e:
            answer = f"error the restore worker is gone: {e.strerror}"
        status = None
        if answer.startswith("pid "):  # answered: its exit (and its daemon's pages) waits for finish()
            self.serving, self.serving_lazy = worker, lazy == ["local"]
        else:
            status = worker.wait()
        if not answer.startswith("pid "):
            why = answer.removeprefix("error ") or f"the restore worker ended with {status}"
            raise Refused(f"the restore on the destination failed: {why}")
        pid = int(answer.split()[1])
        log.info("Receive: restored %s as pid %d", images_dir, pid)
        return pid

    def finish(self):
        """DONE: the worker that restored has exited (not waited for before RESTORE's answer:
        its exit is no part of the frozen time); a lazy restore from the images here has every
        page in (Refused if its daemon failed)."""
        from crpy.pageserver.server import Refused

        worker, self.serving = self.serving, None
        if worker is None:
            return
        line = worker.stdout.readline().strip() if self.serving_lazy else "pages in"
        worker.wait()
        if line != "pages in":
            raise Refused(f"the restored tree lost its pages: {line.removeprefix('error ') or 'the restore worker died'}")
        log.info("Receive: every page of the lazy restore in")

    def abandon(self):
        """The session failed: the worker goes without restoring anything (a restored tree still
        being served its pages keeps its images until they are all in)."""
        if self.serving is not None:
            try:
                self.finish()
            except Exception as e:  # noqa: BLE001 - the session fails anyway; say it
                log.error("Receive: %s", e)
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
