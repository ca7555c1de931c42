"""`crpy lazy-pages -D DIR`: serve the lazy memory of `crpy restore --lazy-pages` (criu's flow).

It listens on DIR/lazy-pages.socket.  Each restored task connects once (crpy.restore.lazy) with
its uffd and the pages of its lazy VMAs, at the addresses of their premap slots.  One loop, one
thread: faults first (the faulting page and up to FAULT_PAGES pending pages after it, by
UFFDIO_COPY, which wakes the task), events next, and when nothing waits a PUSH_PAGES batch pushed
in the background.  An mm ("MM") is closed as soon as none of its pages is pending; the daemon
exits when every task has connected and every MM is done.

The mm changes of the tasks come as events, handled as criu does: REMAP moves pending pages
(the restorer's own mremap of each slot to its place is one), UNMAP and REMOVE (munmap,
madvise(DONTNEED)) drop them -- the task reads zeros there now, as it would have -- and FORK
gives the child an MM of its own with the parent's pending pages (fork copied the rest).  While
an event is unread the kernel answers UFFDIO_COPY with EAGAIN: read the events, then retry.

CRPY_LAZY_PUSH_DELAY_MS (test-only, like CRPY_FAULT) waits that long for events before each
background batch: tests see faults served, and can kill the daemon while most pages are still away.
"""

import bisect
import os
import select
import socket
import time

from crpy.errors import CrpyError
from crpy.lazy.source import SourceGone
from crpy.log import log

PAGE = 4096
FAULT_PAGES = 16
PUSH_PAGES = 256
MISS_SECONDS = 0.5
WAIT_TASKS_S = 30                   # served every task that came, waiting for the rest: give up after
EXPAND_STEP = 2048                  # pages of a task's message turned into table entries per idle step
EEXIST, EAGAIN, ENOENT, EFAULT, ESRCH, EINVAL = 17, 11, 2, 14, 3, 22


class LazyPagesError(CrpyError):
    """The daemon cannot finish (tasks that never connected)."""


class MM:
    """One task's (or forked child's) mm: its uffd and the pages not in it yet."""

    def __init__(self, key, pid, fd, pending=None, unplaced=None, areas=None):
        self.key, self.pid, self.fd = key, pid, fd
        # page address (final: where the task has it) -> (image name, offset, in a WIPEONFORK VMA)
        self.pending = {} if pending is None else pending
        # areas still in their premap slot: slot address -> (final start, length); their pages
        # are pushed once the restorer has moved them (the REMAP event), with no rekeying
        self.unplaced = unplaced or {}
        # where pages may be: the areas' final spans, and the targets of later mremaps (None:
        # anywhere, for an MM made from a page table)
        self.spans = list(self.unplaced.values()) if areas is not None else None
        self._areas = areas            # the task's message, expanded into pending when first needed
        self._expanding = None
        self.area_pages = {}           # (final start, length) -> its pages, in order (from the message)
        self.by_table = areas is None  # push order from sorting pending (after an mremap of the task's)
        self.order, self.cursor = [], 0   # push order: pages in place (some no longer pending)
        self.stale = True
        self.missed = {}               # page address -> when UFFDIO_COPY first found no VMA there

    @property
    def ready(self):
        return self._areas is None

    def expand(self, pages=None):
        """The message's runs as pages, `pages` more of them (None: all).  A step at a time when
        idle, so that the restorer, which waits for each of its move events to be read, never
        waits for a whole 1 GiB table; all of it at a first fault or an event."""
        if self._areas is None:
            return
        if self._expanding is None:
            self._expanding = self._expand_steps()
        for _ in (iter(int, 1) if pages is None else range(0, pages, EXPAND_STEP)):
            if next(self._expanding, None) is None:
                self._areas = self._expanding = None
                self.stale = True
                return

    def find_page(self, addr):
        """Before the table is whole (a fault while it is being built): put the one page at
        addr (final address) into pending, from the message, if it is a saved page."""
        if self._areas is None or addr in self.pending:
            return
        for _slot, start, length, wipe, runs in self._areas:
            if start <= addr < start + length:
                for rel, n, name, off in runs:
                    if start + rel <= addr < start + rel + n:
                        self.pending[addr] = (name, off + addr - start - rel, wipe)
                        return

    def _expand_steps(self):
        step = 0
        for _slot, start, length, wipe, runs in self._areas:
            pages = self.area_pages[(start, length)] = []
            for rel, n, name, off in runs:
                for i in range(0, n, PAGE):
                    self.pending[start + rel + i] = (name, off + i, wipe)
                    pages.append(start + rel + i)
                    step += 1
                    if step % EXPAND_STEP == 0:
                        yield True
        yield True

    def refresh(self):
        """The push order again: the pending pages of the areas in place, sorted."""
        self.expand()
        if not self.stale:
            return
        waiting = set(self.unplaced.values())
        if self.by_table:
            order = sorted(self.pending)
            for start, n in sorted(waiting, reverse=True):
                del order[bisect.bisect_left(order, start):bisect.bisect_left(order, start + n)]
        else:                          # the areas' own lists, joined: no sort on the task's path
            order = []
            for span in sorted(self.area_pages):
                if span not in waiting:
                    order.extend(self.area_pages[span])
        self.order, self.cursor, self.stale = order, 0, False
        self.missed = {a: t for a, t in self.missed.items() if a in self.pending}

    def place(self, slot, to, length):
        """The restorer moved an area from its slot to its place; False if (slot, to, length)
        is no such move."""
        if self.unplaced.get(slot) != (to, length):
            return False
        del self.unplaced[slot]
        self.stale = True
        return True

    def slot_page(self, addr):
        """(final address) of a page of an area still in its slot, else None."""
        for slot, (start, n) in self.unplaced.items():
            if slot <= addr < slot + n:
                return start + addr - slot
        return None

    def may_hold(self, start, end):
        """Could [start, end) hold pending pages?  Only in place (not in a slot), and within a
        span of the task's lazy areas (or where a later mremap moved pages): the restorer's own
        unmaps of the old slots answer no without a look at the page table."""
        if self.spans is None:
            return True
        waiting = set(self.unplaced.values())
        return any(start < s + n and s < end for s, n in self.spans if (s, n) not in waiting)

    def in_range(self, start, end):
        self.refresh()
        lo, hi = bisect.bisect_left(self.order, start), bisect.bisect_left(self.order, end)
        return [a for a in self.order[lo:hi] if a in self.pending]


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
        log.error("lazy-pages: %s: killed the restored task(s) %s, which would wait for pages forever",
                  why, ", ".join(map(str, killed)) or "(none left)")
        for mm in list(self.mms.values()):
            mm.pending.clear()
            self._close_if_done(mm)


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
    listener.bind(path)
    listener.listen(64)
    log_path = log_file and (log_file if os.path.isabs(log_file) else os.path.join(images_dir, log_file))
    daemon = Daemon(source, Guard(log_path))
    log.info("lazy-pages: listening on %s", path)
    try:
        _loop(daemon, listener)
    except SourceGone as e:
        daemon.fail(str(e))
        daemon.guard.done()
        return 1
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
