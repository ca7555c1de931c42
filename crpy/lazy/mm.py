"""The lazy-pages daemon's picture of one mm (crpy.lazy.daemon): its uffd, the saved pages not in it
yet (by the address the task has them at), the areas still in their premap slot, and the order
the background push takes.  The daemon changes it as events come; nothing here talks to the kernel.

The table is built from a task's message in steps when the daemon is idle (EXPAND_STEP pages at a
time), because the restorer waits for every move event to be read: a 1 GiB table built at once
would hold the restore up by about 0.3 s.
"""

import bisect

PAGE = 4096
EXPAND_STEP = 2048                  # pages of a task's message turned into table entries per idle step


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
