"""Step of pre-dump and of dump --track-mem: which pages were written since the previous round.

No soft-dirty on these kernels: each task gets a userfaultfd made inside it by the parasite
(the task closes its copy at once, its fd table stays as it was), in write-protect async mode
(WP_ASYNC|WP_UNPOPULATED); every private VMA is registered for WP and armed.  A write then
clears the page's protection without any event, and PAGEMAP_SCAN(PAGE_IS_WRITTEN,
PM_SCAN_WP_MATCHING) lists the pages written since and protects them again in the same call.
Between crpy commands the fds stay in crpy.dump.memtrack_holder.

A page is taken from the previous round (PE_PARENT) only when all of these hold: tracking ran
without a break since that round (same token and generation in the holder and in the previous
directory's crpy-memtrack.json), its VMA is registered (a VMA new, moved or remapped since is
not), it was not written, and the previous round's chain holds data for it.  Anything else is
dumped again; a lost holder just means a full round.
"""

import os

from crpy.errors import UnsupportedResource
from crpy.log import log

RECORD = "crpy-memtrack.json"
PE_PARENT = 1 << 0
TASK_SIZE = 0x7FFFFFFFF000
_UFFD_VMFLAGS = {"uw": "write-protect", "um": "missing", "ui": "minor"}
# (an AIO ring is no memory userfaultfd can register: its pages are saved whole every round)
_NOT_TRACKED = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "/[aio] (deleted)")


def prev_dir(images_dir, rel):
    """criu's --prev-images-dir: relative to the images dir."""
    return os.path.normpath(os.path.join(images_dir, rel)) if rel else None


def link_parent(images_dir, rel):
    """DIR/parent -> the previous round's directory, as criu links it."""
    from crpy.errors import DumpError
    from crpy.images.chain import PARENT_LINK

    link = os.path.join(images_dir, PARENT_LINK)
    if os.path.lexists(link):
        os.unlink(link)
    if not os.path.isdir(prev_dir(images_dir, rel)):
        raise DumpError(f"--prev-images-dir {rel}: no such directory (relative to {images_dir})",
                        "give the previous pre-dump's directory, relative to -D")
    os.symlink(rel, link)


class Tracking:
    """The tracking of one tree for one round.  keep: hand the fds to the holder at the end
    (pre-dump); else tracking ends with this round (the final dump)."""

    def __init__(self, images_dir, root, prev, keep):
        self.images_dir, self.root, self.prev, self.keep = images_dir, root, prev, keep
        self.fds, self.conn, self.continuous = {}, None, False
        self.holder = None                 # pidfd of the holder lent from: it ends unless it keeps
        self.token, self.generation = os.urandom(16).hex(), 1   # no uuid module: one id, no import

    # ---- the round ----

    def begin(self):
        """Take the fds from the holder; tracking is continuous if the previous directory is the
        round the holder's state belongs to.  Otherwise the old tracking is dropped."""
        record = _read_record(self.prev) if self.prev else None
        state = self._lend()
        if state is not None and record is not None and (record.get("token"), record.get("generation")) \
                == (state.get("token"), state.get("generation")):
            self.continuous = True
            self.token, self.generation = state["token"], state["generation"] + 1
        else:
            self._close_fds()              # drops the old registrations before new ones
        log.info("Memory tracking of %d: %s", self.root,
                 f"round {self.generation}" if self.continuous else "a full round")

    def check_task(self, pid, facts):
        """A task with a userfaultfd of its own, or areas registered with one, is refused."""
        for fd, target in _fd_links(pid):
            if target == "anon_inode:[userfaultfd]":
                raise UnsupportedResource(pid, f"fd {fd} userfaultfd",
                                          hint="a task that uses userfaultfd itself cannot be pre-dumped "
                                               "(crpy tracks its memory with one)")
        ours = pid in self.fds
        for v in facts.vmas:
            kinds = [_UFFD_VMFLAGS[f] for f in v.vmflags if f in _UFFD_VMFLAGS and not (ours and f == "uw")]
            if kinds:
                raise UnsupportedResource(pid, f"{v.start:#x}-{v.end:#x} userfaultfd {'/'.join(kinds)} area",
                                          hint="a task that uses userfaultfd itself cannot be pre-dumped")

    def select(self, pid, facts, page_plan):
        """Move the runs of page_plan not written since the previous round into
        page_plan.parent_runs (PE_PARENT).  Re-arms the task's tracking (frozen: atomic)."""
        from crpy.images.chain import coverage
        from crpy.kernel import pagemap as P

        page_plan.parent_runs = []
        registered = drop_wp_markers(pid, facts, page_plan)
        if not self.continuous or pid not in self.fds:
            return
        with P.Pagemap(pid) as pm:
            # exactly this mask and return mask (the kernel's fast path): kernels without the 2026
            # fix of PAGEMAP_SCAN count a none PTE (a page zapped since) as written and re-arm it
            # only there (6.18.44 here counts it on every path: measured)
            written = pm.scan(0, TASK_SIZE, mask=P.PAGE_IS_WRITTEN, flags=P.PM_SCAN_WP_MATCHING)
        clean = subtract(intersect(registered, coverage(self.prev, pid)), [(s, e) for s, e, _ in written])
        own, parent = split_runs(page_plan.runs, clean)
        page_plan.runs = own
        page_plan.parent_runs = [(s, e, PE_PARENT, r[3]) for s, e, r in parent]
        log.info("pid %d: %d pages written since the last round, %d taken from it", pid,
                 page_plan.nr_pages, sum(e - s for s, e, _ in parent) // 4096)

    def arm(self, pid, parasite, plans, vmas):
        """Register and protect every private VMA of pid not registered yet (new ones, or all
        of them in a first round); the uffd comes from the task through the parasite."""
        from crpy.dump import vmas as V
        from crpy.errors import CrpyError
        from crpy.kernel import uffd

        fd = self.fds.get(pid)
        if fd is None:
            fd = parasite.userfaultfd(uffd.O_CLOEXEC | uffd.O_NONBLOCK)
            self.fds[pid] = fd
            uffd.enable_async_wp(fd)
        registered = [(v.start, v.end) for v in vmas if "uw" in v.vmflags]
        for p in plans:
            if p.pages != V.PAGES_PRIVATE or p.flags & V.MAP_HUGETLB or p.name in _NOT_TRACKED:
                continue
            if intersect([(p.start, p.end)], registered) == [(p.start, p.end)]:
                continue
            try:
                uffd.register_wp(fd, p.start, p.end)
                uffd.write_protect(fd, p.start, p.end)
            except CrpyError as e:         # its pages are simply dumped in full every round
                log.warning("pid %d: %#x-%#x not tracked: %s", pid, p.start, p.end, e.one_line())

    def finish(self):
        """The round's images are written: record the state (pre-dump)."""
        if self.keep:
            import json

            with open(os.path.join(self.images_dir, RECORD), "w") as f:
                json.dump(self._state(), f)

    def hand_over(self):
        """After the tree resumed: the holder keeps the fds (pre-dump), or tracking ends (dump)."""
        if not self.keep:
            return self.abandon()
        import json
        import socket

        try:
            if self.conn is None:
                self.conn = _start_holder(self.root)
            pids = sorted(self.fds)
            socket.send_fds(self.conn, [b"keep " + json.dumps(self._state()).encode()],
                            [self.fds[p] for p in pids])
            if self.conn.recv(16) == b"ok" and self.holder is not None:
                os.close(self.holder)      # it goes on holding: nothing to wait for
                self.holder = None
        finally:
            self.abandon()

    def abandon(self):
        """Close crpy's fds: the tracking ends unless the holder kept copies.  A holder that
        lent its fds ends now: it is waited for, so no process of crpy outlives the command."""
        self._close_fds()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.holder is not None:
            import select

            select.select([self.holder], [], [], 5.0)
            os.close(self.holder)
            self.holder = None

    # ---- helpers ----

    def _state(self):
        return {"token": self.token, "generation": self.generation, "pids": sorted(self.fds)}

    def _close_fds(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def _lend(self):
        import json
        import socket

        from crpy.dump.memtrack_holder import socket_name

        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            conn.connect(socket_name(self.root))
            conn.send(b"lend")
            msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 253)
        except OSError:
            conn.close()
            return None
        if not msg:
            conn.close()
            return None
        state = json.loads(msg)
        self.fds = dict(zip(state["pids"], fds))
        self.conn = conn
        try:
            self.holder = os.pidfd_open(state["holder"])
        except (OSError, KeyError):
            pass                           # gone already
        return state


def drop_wp_markers(pid, facts, page_plan):
    """Take the uffd-wp markers of a tracked task out of page_plan.runs (they are no memory: a
    dump would save zeros or file bytes for them); returns the write-protect registered ranges."""
    registered = [(v.start, v.end) for v in facts.vmas if "uw" in v.vmflags]
    if registered:
        page_plan.runs, _ = split_runs(page_plan.runs, _wp_markers(pid, registered))
    return registered


def _wp_markers(pid, registered):
    """[(start, end)] of uffd-wp PTE markers (WP_UNPOPULATED) in the registered ranges: not
    memory, but PAGEMAP_SCAN reports them as PAGE_IS_SWAPPED.  The raw pagemap (root sees swap
    entries) tells them from swapped pages: swap type 31, SWP_PTE_MARKER (32 - 1 marker type)."""
    import struct

    from crpy.kernel import pagemap as P

    out = []
    with P.Pagemap(pid) as pm:
        for lo, hi in registered:
            swapped = P.PAGE_IS_SWAPPED | P.PAGE_IS_PRESENT
            for s, e, _ in pm.scan(lo, hi, mask=swapped, inverted=P.PAGE_IS_PRESENT):
                n = (e - s) // 4096
                raw = struct.unpack(f"<{n}Q", os.pread(pm.fd, n * 8, s // 4096 * 8))
                for i, entry in enumerate(raw):
                    if entry & _PM_SWAP and entry & 0x1F == _SWP_PTE_MARKER:
                        a = s + i * 4096
                        if out and out[-1][1] == a:
                            out[-1] = (out[-1][0], a + 4096)
                        else:
                            out.append((a, a + 4096))
    return out


_PM_SWAP, _SWP_PTE_MARKER = 1 << 62, 31


def _fd_links(pid):
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return out.items()


def _read_record(images_dir):
    import json

    try:
        with open(os.path.join(images_dir, RECORD)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _start_holder(root):
    import socket
    import subprocess
    import sys

    from crpy.dump.memtrack_holder import socket_name

    name = socket_name(root)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=package_parent)
    holder = subprocess.Popen([sys.executable, "-m", "crpy.dump.memtrack_holder", name[1:]], cwd="/", env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    holder.stdout.readline()
    holder.stdout.close()
    holder.returncode = 0                  # not ours to wait for: it outlives this command
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    conn.connect(name)
    log.info("Memory tracking of %d kept by holder pid %d", root, holder.pid)
    return conn


# ---- range arithmetic on sorted [(start, end)] lists ----

def intersect(a, b):
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return _merge(out)


def subtract(a, b):
    """a minus b, both sorted and without overlaps within each list; linear in their sizes."""
    out, j = [], 0
    for s, e in a:
        while j < len(b) and b[j][1] <= s:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][0] > s:
                out.append((s, b[k][0]))
            s = max(s, b[k][1])
            k += 1
        if s < e:
            out.append((s, e))
    return out


def _merge(ranges):
    out = []
    for s, e in sorted(ranges):
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def split_runs(runs, clean):
    """(runs outside clean, [(s, e, run)] inside it): page runs cut at the clean ranges."""
    import bisect

    own, parent = [], []
    ends = [hi for _, hi in clean]
    for run in runs:
        s, e = run[0], run[1]
        i = bisect.bisect_right(ends, s)           # the first clean range ending after s
        while i < len(clean) and clean[i][0] < e:
            lo, hi = max(s, clean[i][0]), min(e, clean[i][1])
            if lo > s:
                own.append((s, lo) + tuple(run[2:]))
            parent.append((lo, hi, run))
            s = hi
            i += 1
        if s < e:
            own.append((s, e) + tuple(run[2:]))
    return own, parent
