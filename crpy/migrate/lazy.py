"""`crpy migrate --lazy`, both ends of the page traffic after the final dump.

Source (LazyServing): the final dump (DumpOptions.lazy_pages) leaves its private pages in page
pipes (crpy.dump.held_pages), its pages images empty files of their size in the work directory;
a page server (crpy.pageserver.serve) listens on this end's address of the migration connection,
and RESTORE carries "lazy", that address and port, and the size of every pages image not sent.
A GET drains the pipes it needs into the image first; once the tree runs there the rest is
drained in the background.  After the restore it serves GETs until the destination's lazy-pages
daemon says DONE; then the local images are complete and get their crpy-digests.

Destination (prepare_lazy, in crpy.migrate.restore_worker): each pages image not sent is made
as a sparse file of its size (the restore checks sizes); the pages the restore reads itself
(every area `crpy restore --lazy-pages` does not hand to the daemon) are fetched into it first;
then `crpy lazy-pages --page-server` is forked (start_daemon; it outlives the receiver: a session
of its own, its output in DIR/lazy-pages.out) and the restore runs with --lazy-pages.

Destination of a pre-copy migration (migrate --restore-mode lazy, the default): every page is
here already, in the chain; the restore worker forks `crpy lazy-pages` on the local images
(start_daemon with no page server) and restores with --lazy-pages, so the tree runs before its
memory is filled; the receiver answers DONE once that daemon has every page in.
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
        self.held = self.drainer = None    # the final dump's crpy.dump.held_pages.HeldDump

    def request(self):
        """RESTORE's lazy part: b"lazy\\0ADDR\\0PORT\\0NAME=SIZE..." (the pages images kept here)."""
        from crpy.images.pages import is_pages_image

        sizes = [f"{e.name}={e.stat().st_size}" for e in os.scandir(self.images_dir)
                 if is_pages_image(e.name) and e.is_file(follow_symlinks=False)]
        return "\0".join(["lazy", self.address, str(self.port), *sorted(sizes)]).encode()

    def start(self):
        """Serve in a thread from now (before RESTORE: the destination fetches during its restore)."""
        import threading

        self.error, self.bytes = None, 0
        self.thread = threading.Thread(target=self._serve, name="crpy-lazy-serving", daemon=True)
        self.thread.start()

    def _serve(self):
        from crpy.pageserver.serve import PageServing, serve_connections

        serving, t0 = PageServing(self.images_dir, self.held), time.monotonic()
        try:
            self.listener.settimeout(ACCEPT_TIMEOUT_S)
            serve_connections(self.listener, serving)
            log.info("Migration: %d bytes of pages served lazily in %.3f s", serving.bytes, time.monotonic() - t0)
        except OSError as e:               # the listener closed (a failed restore) or no peer came
            self.error = f"serving pages: {e.strerror or e}"
        finally:
            self.bytes = serving.bytes
            serving.close()

    def drain_in_background(self):
        """The tree runs there: the pipes not asked for yet go into the local images meanwhile."""
        import threading

        if self.held is not None:
            self.drainer = threading.Thread(target=self._drain_quietly, name="crpy-lazy-drain", daemon=True)
            self.drainer.start()

    def _drain_quietly(self):
        try:
            self.held.drain_all()
        except OSError as e:               # said again by complete_local(), which drains what is left
            log.error("Migration: draining the held pages: %s", e)

    def complete_local(self):
        """Every held page into the local images, then their crpy-digests: a complete dump here."""
        if self.held is None:
            return
        from crpy.images.digest import write_digests

        if self.drainer is not None:
            self.drainer.join()
        self.held.drain_all()
        self.held.close()
        self.held = None
        write_digests(self.images_dir)

    def run(self):
        """Wait until the destination has every page (its daemon's DONE)."""
        self.thread.join()
        self.close()
        self.complete_local()
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
    return start_daemon(images_dir, (address, port))


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


def start_daemon(images_dir, page_server=None):
    """`crpy lazy-pages -D images_dir [--page-server]` forked from this process (the restore
    worker, which has crpy's modules loaded: no interpreter start in the frozen time), in a
    session of its own, its output in DIR/lazy-pages.out; returns its pid once it listens."""
    from crpy.restore.lazy import socket_path

    out_path = os.path.join(images_dir, "lazy-pages.out")
    _flush_std()
    pid = os.fork()
    if pid == 0:
        _daemon_child(images_dir, page_server, out_path)
    sock, deadline = socket_path(images_dir), time.monotonic() + 30
    while not os.path.exists(sock):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            if not done:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            with open(out_path) as f:
                raise RuntimeError(f"crpy lazy-pages did not start: {f.read().strip()[-300:]}")
        time.sleep(0.002)
    return pid


def _flush_std():
    import sys

    sys.stdout.flush()
    sys.stderr.flush()


def _daemon_child(images_dir, page_server, out_path):
    """The forked daemon: never returns."""
    import sys

    code = 1
    try:
        os.setsid()
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        from crpy.errors import CrpyError
        from crpy.lazy.daemon import run_lazy_pages

        try:
            code = run_lazy_pages(images_dir, "lazy-pages.log", 4, page_server)
        except CrpyError as e:         # one line, as the command line says it
            print(e.error_line(), file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 - a bug: still one line
        print(f"crpy: internal error in lazy-pages: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        _flush_std()
        os._exit(code)


def daemon_result(pid, images_dir):
    """Wait for a daemon of start_daemon; None if it had every page in, else its last line."""
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    try:
        with open(os.path.join(images_dir, "lazy-pages.out")) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else f"crpy lazy-pages ended with status {os.waitstatus_to_exitcode(status)}"
