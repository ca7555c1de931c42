"""`crpy lazy-pages -D DIR`: serve the lazy memory of `crpy restore --lazy-pages` (criu's flow).

It listens on DIR/lazy-pages.socket.  Each restored task connects once (crpy.restore.lazy) with
its uffd and the pages of its lazy VMAs, at the addresses of their premap slots.  One loop, one
thread: faults first (the faulting page and up to FAULT_PAGES pending pages after it, by
UFFDIO_COPY, which wakes the task), events next, and when nothing waits a PUSH_PAGES batch pushed
in the background.  An mm ("MM") is closed as soon as none of its pages is pending; the daemon
exits when every task has connected and every MM is done.

The mm changes of the tasks come as events, handled as criu does: REMAP moves pending pages
(the restorer's own mremap of each slot to its place only marks the area in place: crpy.lazy.mm), UNMAP and REMOVE (munmap,
madvise(DONTNEED)) drop them -- the task reads zeros there now, as it would have -- and FORK
gives the child an MM of its own with the parent's pending pages (fork copied the rest).  While
an event is unread the kernel answers UFFDIO_COPY with EAGAIN: read the events, then retry.

CRPY_LAZY_PUSH_DELAY_MS (test-only, like CRPY_FAULT) waits that long for events before each
background batch: tests see faults served, and can kill the daemon while most pages are still away.
"""

import os
import select
import socket
import time

from crpy.errors import CrpyError
from crpy.lazy.mm import EXPAND_STEP, MM, PAGE
from crpy.lazy.source import SourceGone
from crpy.log import log

FAULT_PAGES = 16
PUSH_PAGES = 256
MISS_SECONDS = 0.5
WAIT_TASKS_S = 30                   # served every task that came, waiting for the rest: give up after
EEXIST, EAGAIN, ENOENT, EFAULT, ESRCH, EINVAL = 17, 11, 2, 14, 3, 22


class LazyPagesError(CrpyError):
    """The daemon cannot finish (tasks that never connected)."""


class Daemon:
    def __init__(self, source, guard):
        self.source, self.guard = source, guard
        self.mms = {}                  # uffd -> MM
        self.expected = None           # tasks that will connect (from the first message)
        self.connected = 0
        self.next_key = 0
        self.served = self.pushed = 0
        self.retry = []                # (mm, address) of faults to take again

    # ------------------------------------------------------------------ clients
    def accept(self, conn):
        from crpy.restore.lazy import read_message

        message, fd = read_message(conn)
        if message is None:            # `restore --lazy-pages` checking that we listen
            return
        self.connected += 1
        self.expected = message["tasks"]
        key = self._key()
        if fd >= 0:
            self.guard.hold(key, message["pid"], fd)
            self._add(MM(key, message["pid"], fd, areas=message["areas"],
                         unplaced={slot: (start, length) for slot, start, length, _, _ in message["areas"]}),
                      held=True)
        conn.sendall(b"ok")
        pages = sum(n for area in message["areas"] for _, n, _, _ in area[4]) // PAGE
        log.info("pid %d connected: %d lazy pages (%d of %d tasks)", message["pid"], pages,
                 self.connected, self.expected)

    def _key(self):
        self.next_key += 1
        return self.next_key

    def _add(self, mm, held=False):
        if not held:
            self.guard.hold(mm.key, mm.pid, mm.fd)
        self.mms[mm.fd] = mm
        self._close_if_done(mm)

    def _close_if_done(self, mm):
        if mm.pending or not mm.ready or mm.fd not in self.mms:
            return
        del self.mms[mm.fd]
        self.guard.release(mm.key)
        os.close(mm.fd)
        log.info("pid %d: every page in (mm %d)", mm.pid, mm.key)

    def finished(self):
        return self.expected is not None and self.connected >= self.expected and not self.mms

    # ------------------------------------------------------------------ events
    def read_events(self, mm):
        from crpy.kernel import uffd

        while mm.fd in self.mms:
            try:
                data = os.read(mm.fd, uffd.MSG_SIZE * 64)
            except BlockingIOError:
                return
            if not data:
                return
            for event, a, b, c in uffd.parse_messages(data):
                self._event(mm, event, a, b, c)

    def _event(self, mm, event, a, b, c):
        from crpy.kernel import uffd

        if event == uffd.UFFD_EVENT_PAGEFAULT:
            self.fault(mm, b & ~(PAGE - 1))
        elif event == uffd.UFFD_EVENT_REMAP and mm.place(a, b, c):
            log.debug("pid %d: area %#x-%#x in place (from %#x)", mm.pid, b, b + c, a)
        elif event == uffd.UFFD_EVENT_REMAP and not mm.may_hold(a, a + c):
            pass
        elif event == uffd.UFFD_EVENT_REMAP:
            if mm.spans is not None:
                mm.spans.append((b, c))
            moved = {b + (addr - a): mm.pending.pop(addr) for addr in mm.in_range(a, a + c)}
            mm.pending.update(moved)
            mm.stale = mm.by_table = True
            log.debug("pid %d: remap %#x -> %#x (%d bytes, %d pending pages)", mm.pid, a, b, c, len(moved))
        elif event in (uffd.UFFD_EVENT_UNMAP, uffd.UFFD_EVENT_REMOVE) and not mm.may_hold(a, b):
            pass
        elif event in (uffd.UFFD_EVENT_UNMAP, uffd.UFFD_EVENT_REMOVE):
            for addr in mm.in_range(a, b):
                del mm.pending[addr]
            log.debug("pid %d: %s %#x-%#x", mm.pid, "unmap" if event == uffd.UFFD_EVENT_UNMAP else "remove", a, b)
            self._close_if_done(mm)
        elif event == uffd.UFFD_EVENT_FORK:
            # fork copied the present pages; a wipe-on-fork VMA starts empty in the child
            mm.expand()
            child = MM(self._key(), mm.pid, a, {k: v for k, v in mm.pending.items() if not v[2]},
                       dict(mm.unplaced))
            child.spans = None if mm.spans is None else list(mm.spans)
            log.info("pid %d forked: its child gets %d pending pages (mm %d)", mm.pid, len(child.pending),
                     child.key)
            self._add(child)

    # ------------------------------------------------------------------ copying
    def fault(self, mm, addr):
        from crpy.kernel import uffd

        key = mm.slot_page(addr) if mm.unplaced else None
        mm.find_page(addr if key is None else key)
        if key in mm.pending or addr in mm.pending:
            if key in mm.pending:      # a touch before the restorer moved the area: one page
                self._copy(mm, key, 1, dst=addr)
            else:
                self._copy(mm, addr, FAULT_PAGES)
            if (addr if key is None else key) in mm.pending and mm.fd in self.mms:
                # not copied (the mm was changing): never a zero page for a saved one; the
                # thread waits on, and the fault is taken again once the events are read
                self.retry.append((mm, addr))
            else:
                self.served += 1
            return
        # not ours (never saved, or already in and raced): a zero page, or just wake the task
        err = uffd.zeropage(mm.fd, addr, PAGE)
        if err == -EEXIST:
            uffd.wake(mm.fd, addr, PAGE)
        elif err == -EAGAIN:
            self.read_events(mm)
            if mm.fd in self.mms:
                self.fault(mm, addr)

    def retry_faults(self):
        retry, self.retry = self.retry, []
        for mm, addr in retry:
            if mm.fd in self.mms:
                self.fault(mm, addr)
        return bool(retry)

    def push(self):
        """One background batch of up to PUSH_PAGES pages (in runs: the saved pages of a VMA
        need not be contiguous), into the first MM with pages pending; False when none is."""
        for mm in list(self.mms.values()):
            budget = PUSH_PAGES
            if not mm.ready:
                mm.expand(EXPAND_STEP)
                return True
            if mm.unplaced:            # the restorer is still moving areas: its events come first
                continue
            mm.refresh()
            while budget > 0 and mm.fd in self.mms:
                while mm.cursor < len(mm.order) and mm.order[mm.cursor] not in mm.pending:
                    mm.cursor += 1
                if mm.cursor >= len(mm.order):
                    if mm.missed:          # pages that found no VMA: another pass after the events
                        mm.stale = True
                    break
                addr = mm.order[mm.cursor]
                done = self._copy(mm, addr, budget)
                self.pushed += done
                budget -= max(done, 1)
                if addr in mm.missed:
                    mm.cursor += 1
                elif addr in mm.pending:   # EAGAIN: the events are read, the next batch retries
                    break
            if budget < PUSH_PAGES:
                return True
        return False

    def _copy(self, mm, addr, max_pages, dst=None):
        """UFFDIO_COPY the pending run from addr (contiguous in memory and in one image) to
        dst (default addr); returns pages copied.  Pages found already present are dropped
        from pending."""
        from crpy.kernel import uffd

        name, off, wipe = mm.pending[addr]
        n = 1
        while n < max_pages and mm.pending.get(addr + n * PAGE) == (name, off + n * PAGE, wipe):
            n += 1
        src = self.source.address(name, off, n * PAGE)
        done, err = uffd.copy(mm.fd, addr if dst is None else dst, src, n * PAGE)
        for i in range(done // PAGE):
            del mm.pending[addr + i * PAGE]
        if err == -EAGAIN:
            self.read_events(mm)       # an mm change waits to be read first
        elif err in (-ENOENT, -EINVAL) and not done and n > 1:
            return self._copy(mm, addr, 1)   # the run crosses into another VMA: page by page
        elif err == -ENOENT and not done:
            self._missed(mm, addr)
        elif err in (-EEXIST, -EFAULT, -EINVAL) and not done:
            mm.pending.pop(addr, None)   # present already, or no longer a registered VMA there
            log.debug("pid %d: page %#x not copied: %s", mm.pid, addr, os.strerror(-err))
        elif err == -ESRCH:
            log.info("pid %d: its mm is gone (%d pages never needed)", mm.pid, len(mm.pending))
            mm.pending.clear()
        elif err and not done:
            log.warning("pid %d: UFFDIO_COPY at %#x: %s", mm.pid, addr, os.strerror(-err))
            mm.pending.pop(addr, None)
        self._close_if_done(mm)
        return done // PAGE

    def _missed(self, mm, addr):
        """No VMA at addr: a move or unmap whose event is on its way (the kernel queues it only
        after the change), or a VMA this mm never had (MADV_DONTFORK, in a forked child).  The
        page stays pending for MISS_SECONDS, retried after the events, then it is dropped."""
        first = mm.missed.setdefault(addr, time.monotonic())
        self.read_events(mm)
        if addr in mm.pending and time.monotonic() - first > MISS_SECONDS:
            del mm.pending[addr]
            del mm.missed[addr]
            log.debug("pid %d: no VMA at page %#x for %.1f s: dropped", mm.pid, addr, MISS_SECONDS)

    def fail(self, why):
        """The source is gone: kill every waiting task (the guard's way) and say it once."""
        from crpy.lazy.guard import _kill_trees

        killed = _kill_trees(sorted({mm.pid for mm in self.mms.values()}))
        line = (f"lazy-pages: {why}: killed the restored task(s) {', '.join(map(str, killed)) or '(none left)'}, "
                f"which would wait for pages forever")
        log.error("%s", line)
        for mm in list(self.mms.values()):
            mm.pending.clear()
            self._close_if_done(mm)
        return line


def run_lazy_pages(images_dir, log_file, verbosity, page_server):
    from crpy import log as crpy_log
    from crpy.lazy.guard import Guard
    from crpy.lazy.source import open_source
    from crpy.restore.lazy import socket_path

    crpy_log.setup(verbosity, log_file, images_dir)
    source = open_source(images_dir, page_server)
    path = socket_path(os.path.abspath(images_dir))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # bound under a name of its own and renamed once it listens: whoever waits for the path to
    # exist (the restore worker, the tests) may connect at once, never between bind and listen
    # (ECONNREFUSED).  The name is shorter than the socket's: no path too long for bind.
    fresh = os.path.join(os.path.dirname(path), ".lp-new")
    try:
        os.unlink(fresh)
    except FileNotFoundError:
        pass
    listener.bind(fresh)
    listener.listen(64)
    os.rename(fresh, path)
    log_path = log_file and (log_file if os.path.isabs(log_file) else os.path.join(images_dir, log_file))
    daemon = Daemon(source, Guard(log_path))
    log.info("lazy-pages: listening on %s", path)
    try:
        _loop(daemon, listener)
    except SourceGone as e:
        line = daemon.fail(str(e))
        daemon.guard.done()
        raise LazyPagesError(line, "the pages' source (its images or page server) went away") from None
    except LazyPagesError:
        daemon.guard.done()
        raise
    finally:
        listener.close()
        try:
            os.unlink(path)
        except OSError:
            pass
    daemon.guard.done()
    log.info("lazy-pages: all pages in (%d served on fault, %d pushed)", daemon.served, daemon.pushed)
    if hasattr(source, "done"):        # a page server: it may stop serving now
        source.done()
    return 0


def _loop(daemon, listener):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    watched = set()
    delay_ms = int(os.environ.get("CRPY_LAZY_PUSH_DELAY_MS", "0"))   # events are read meanwhile
    pushing = True                     # until a push finds nothing to do: then wait for events
    last_connect = None
    while not daemon.finished():
        if (daemon.connected and not daemon.mms and last_connect is not None
                and time.monotonic() - last_connect > WAIT_TASKS_S):
            raise LazyPagesError(f"{daemon.connected} of {daemon.expected} restored tasks connected and were "
                                 f"served; the others never came in {WAIT_TASKS_S} s (did the restore fail?)")
        for fd in set(daemon.mms) - watched:
            poller.register(fd, select.POLLIN)
        for fd in watched - set(daemon.mms):
            poller.unregister(fd)
        watched = set(daemon.mms)
        ready = poller.poll((delay_ms or 0) if pushing else 50)
        pushing = pushing or bool(ready)
        for fd, _ in ready:
            if fd == listener.fileno():
                conn, _ = listener.accept()
                with conn:
                    daemon.accept(conn)
                last_connect = time.monotonic()
            elif fd in daemon.mms:
                daemon.read_events(daemon.mms[fd])
        if daemon.retry_faults():
            continue
        if not ready:
            pushing = daemon.push()
