"""`crpy migrate --lazy`, both ends of the page traffic after the final dump.

Source (LazyServing): the final dump's pages images stay in the work directory; a page server
(crpy.pageserver.serve) listens on this end's address of the migration connection, and RESTORE
carries "lazy", that address and port, and the size of every pages image not sent.  After the
restore it serves GETs until the destination's lazy-pages daemon says DONE.

Destination (prepare_lazy, in crpy.migrate.restore_worker): each pages image not sent is made
as a sparse file of its size (the restore checks sizes); the pages the restore reads itself
(every area `crpy restore --lazy-pages` does not hand to the daemon) are fetched into it first;
then `crpy lazy-pages --page-server` is started (it outlives the receiver: a session of its own,
its output in DIR/lazy-pages.out) and the restore runs with --lazy-pages.
"""

import os
import time

from crpy.log import log

ACCEPT_TIMEOUT_S = 120
FETCH_CHUNK = 4 << 20


class LazyServing:
    """The source's page server for the destination's lazy-pages daemon."""

    def __init__(self, images_dir, address):
        from crpy.pageserver.server import listen

        self.images_dir = images_dir
        self.listener, (self.address, self.port) = listen(address, 0)

    def request(self):
        """RESTORE's lazy part: b"lazy\\0ADDR\\0PORT\\0NAME=SIZE..." (the pages images kept here)."""
        sizes = [f"{e.name}={e.stat().st_size}" for e in os.scandir(self.images_dir)
                 if e.name.startswith("pages-") and e.name.endswith(".img") and e.is_file(follow_symlinks=False)]
        return "\0".join(["lazy", self.address, str(self.port), *sorted(sizes)]).encode()

    def start(self):
        """Serve in a thread from now (before RESTORE: the destination fetches during its restore)."""
        import threading

        self.error, self.bytes = None, 0
        self.thread = threading.Thread(target=self._serve, name="crpy-lazy-serving", daemon=True)
        self.thread.start()

    def _serve(self):
        from crpy.pageserver.serve import PageServing, serve_connections

        serving, t0 = PageServing(self.images_dir), time.monotonic()
        try:
            self.listener.settimeout(ACCEPT_TIMEOUT_S)
            serve_connections(self.listener, serving)
            log.info("Migration: %d bytes of pages served lazily in %.3f s", serving.bytes, time.monotonic() - t0)
        except OSError as e:               # the listener closed (a failed restore) or no peer came
            self.error = f"serving pages: {e.strerror or e}"
        finally:
            self.bytes = serving.bytes
            serving.close()

    def run(self):
        """Wait until the destination has every page (its daemon's DONE)."""
        self.thread.join()
        self.close()
        if self.error:
            from crpy.errors import CrpyError

            raise CrpyError(f"migration: the tree runs on the destination but {self.error}",
                            "see the destination's lazy-pages.log")
        return self.bytes

    def close(self):
        import socket

        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes an accept() in the serving thread
        except OSError:
            pass
        self.listener.close()


def parse_request(fields):
    """RESTORE's lazy fields (after "lazy") -> (address, port, {pages image name: size})."""
    address, port, *sizes = fields
    return address, int(port), {n: int(v) for n, _, v in (f.partition("=") for f in sizes)}


def prepare_lazy(images_dir, address, port, sizes):
    """Destination: placeholders, the eagerly restored pages fetched, the daemon started; its Popen."""
    from crpy.lazy.source import RemotePages

    for name, size in sizes.items():
        if "/" in name or not name.startswith("pages-"):
            raise ValueError(f"refused pages image name {name!r}")
        with open(os.path.join(images_dir, name), "xb") as f:
            f.truncate(size)
    source = RemotePages(address, port)
    try:
        fetched = _fetch_eager(images_dir, source, {os.path.join(images_dir, n) for n in sizes})
    finally:
        source.sock.close()            # not DONE: the daemon's connection comes next
    log.info("Lazy migration: %d bytes fetched for the eagerly restored areas", fetched)
    return _start_daemon(images_dir, address, port)


def _fetch_eager(images_dir, source, placeholders):
    """Fetch what the restore reads itself: every run in a placeholder of an area that is not
    lazy (crpy.restore.lazy.mark_lazy's choice for the root; every area of the other tasks, whose
    copy-on-write sharing is only planned at fork)."""
    import ctypes

    from crpy.restore import tree
    from crpy.restore.lazy import mark_lazy

    nodes = tree.load_tree(images_dir)
    fds, total = {}, 0
    try:
        for i, node in enumerate(nodes):
            if node.task is None:
                continue
            mark_lazy(node.task, node)
            for area in node.task.areas:
                if area.lazy and i == 0:
                    continue
                for _rel, length, path, off in area.runs:
                    if path not in placeholders:
                        continue
                    if path not in fds:
                        fds[path] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                    for pos in range(0, length, FETCH_CHUNK):
                        n = min(FETCH_CHUNK, length - pos)
                        addr = source.address(os.path.basename(path), off + pos, n)
                        os.pwrite(fds[path], ctypes.string_at(addr, n), off + pos)
                        total += n
    finally:
        for fd in fds.values():
            os.close(fd)
    return total


def _start_daemon(images_dir, address, port):
    import subprocess
    import sys

    from crpy.restore.lazy import socket_path

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo + (os.pathsep + os.environ["PYTHONPATH"]
                                               if os.environ.get("PYTHONPATH") else ""))
    with open(os.path.join(images_dir, "lazy-pages.out"), "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "crpy", "lazy-pages", "-D", images_dir, "--page-server",
                                 "--address", address, "--port", str(port), "-v4", "-o", "lazy-pages.log"],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    sock, deadline = socket_path(images_dir), time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            with open(os.path.join(images_dir, "lazy-pages.out")) as f:
                raise RuntimeError(f"crpy lazy-pages did not start: {f.read().strip()[-300:]}")
        time.sleep(0.005)
    return proc
