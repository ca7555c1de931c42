"""Restore of a tree's leaf tasks without Python after the fork: the parent compiles all a leaf
does (crpy.restore.child: premap, fill and check its pages, fs, fds, task state, "ok", wait for
the go, jump) into a program of syscalls that the child runs in C straight out of clone3
(crpy/kernel/cdef/44_leaf_prog.c).  A child of crpy's interpreter that runs bytecode copies every
page of crpy's heap it touches: that, and the bytecode, were three quarters of a leaf's restore.

The parent also fills the child's restorer argument block (child._build_args, as the child
would) in a scratch mapping of its own, and the program copies the pages of it that were
written (pagemap says which) and the relocated blob into the child's region.  The program's
first step reserves that region; if its place is taken, the child goes on in Python (which
plans another), unless a forker leaf forked it (see Spawner): that one has no Python left, and
its child fails in one line instead.

Only the plain cases are compiled; compile_leaf says None (and the child runs Python as before)
for a task with children, threads, a session or group of its own, lazy pages, a shared fd table,
a tty, fds not held open for the tree (crpy.resources.shared), fd owners, locks, an epoll, a
chroot, a task state other than crpy's beyond a few prctl flags, or fault points armed.  The
child then logs nothing; what fails is one line on the report pipe, as from Python.
"""

import os

from crpy.errors import CrpyError
from crpy.kernel.syscalls import NR
from crpy.log import log
from crpy.restore import premap

OP_WORDS, HEADER = 11, 3           # int64 words per op, and before them, as 44_leaf_prog.c reads them
SYSCALL, STORE32, READ, READ_CRC, VERIFY, EXPECT_BYTE, JUMP, MEMCPY, UNMAP, SPAWN = range(1, 11)
NONE, NONNEG, EQ, EXIT, FALLBACK = range(5)
SPAWN_MIN = 8                      # compiled leaves from which one of them forks the others
SPAWN_CHUNK = 32                   # leaves one forker forks: the next ones compile meanwhile
MAX_UNMAP = 1024                   # mappings the forker leaf can unmap
NR_OPENAT, NR_DUP3, NR_FCNTL, NR_UMASK, NR_CHDIR, NR_MLOCK, NR_CLOSE_RANGE = 257, 292, 72, 95, 80, 149, 436
AT_FDCWD, F_DUPFD_CLOEXEC, PR_SET_PDEATHSIG = -100, 1030, 1
MADV_DONTNEED, MADV_NOHUGEPAGE = 4, 15
PAGE = 4096
SENTINEL = 0x0123456789ABCDEF      # stands for the digest found, in a chunk's error line
_blobs = {}                        # address -> (where a copy of the blob relocated there is, its size)


def _relocated_blob(addr):
    """The restorer blob relocated for `addr`, made once per address (siblings share a layout),
    in a mapping of its own (not crpy's heap: see Arena)."""
    if addr not in _blobs:
        from crpy.restore import blob

        image = bytes(blob.blob().relocated(addr))
        at = _map_anon(len(image), "map a relocated restorer blob")
        _copy_to(at, image)
        _blobs[addr] = (at, len(image))
    return _blobs[addr]


def _map_anon(size, what):
    return premap._syscall(NR.mmap, 0, (size + PAGE - 1) & ~(PAGE - 1), premap.PROT_READ | premap.PROT_WRITE,
                           premap.MAP_PRIVATE | premap.MAP_ANONYMOUS | premap.MAP_NORESERVE, -1, 0,
                           what=lambda: what)


def _copy_to(addr, data):
    import ctypes

    ctypes.memmove(addr, data, len(data))


class Arena:
    """The buffers of a pool's programs, one after the other in an anonymous mapping of their
    own: out of crpy's [heap], which the forker leaf can then unmap (Spawner) rather than have
    every fork of it copy the heap's page tables and every restorer unmap them again (~1500
    pages of them here)."""

    SEGMENT = 64 << 20             # address space only: pages are backed as they are written

    def __init__(self):
        self.segments = []         # [[address, size, used]], the last one filling

    def put(self, data):
        """Address of a copy of bytes `data` (16-byte aligned); a new segment when one is full."""
        last = self.segments[-1] if self.segments else None
        if last is None or last[2] + len(data) > last[1]:
            size = max(self.SEGMENT, (len(data) + PAGE - 1) & ~(PAGE - 1))
            addr = _map_anon(size, "map the leaves' program buffers")
            premap._syscall(NR.madvise, addr, size, MADV_NOHUGEPAGE,      # (the leaves write to a few)
                            what=lambda: "keep the leaves' program buffers in small pages")
            last = [addr, size, 0]
            self.segments.append(last)
        at = last[0] + last[2]
        last[2] = (last[2] + len(data) + 15) & ~15
        _copy_to(at, data)
        return at

    def spans(self):
        """[(address, bytes used)] of every segment."""
        return [(addr, used) for addr, _, used in self.segments]

    def drop(self):
        for addr, size, _ in self.segments:
            premap._syscall(NR.munmap, addr, size, what=lambda: "unmap the leaves' program buffers")
        self.segments = []


class Pool:
    """What the programs of one batch of leaves share: their strings (each once), the buffers
    they point into (in the Arena, until forked() drops them), the scratch of their argument
    blocks."""

    def __init__(self):
        self.strs, self.offsets, self.buffers, self.arena = bytearray(), {}, {}, Arena()
        self.fragments = {}         # ops made alike for siblings (the same VMA at the same place)
        self.files = {}             # images dir -> fdtable._parse_files of it
        self.scratch = Scratch()

    def text(self, s):
        """Offset of s in the strings block."""
        off = self.offsets.get(s)
        if off is None:
            off = self.offsets[s] = len(self.strs)
            self.strs += s.encode(errors="surrogateescape") + b"\0"
        return off

    def buffer(self, data, share=False):
        """Address of a copy of bytes `data` (NUL-ended); share: one copy for equal data."""
        if share and data in self.buffers:
            return self.buffers[data]
        addr = self.arena.put(data + b"\0")
        if share:
            self.buffers[data] = addr
        return addr

    def words64(self, values):
        import array

        return self.arena.put(array.array("q", values).tobytes())

    def finish(self, programs, fallback=None):
        """[(int64_t * program, char * strings) or None] for crpy.kernel.clone.fork_many.
        fallback: False for programs that may not fall back to Python (a spawned leaf's)."""
        from crpy.kernel._sys import ffi

        strs = ffi.cast("char *", self.arena.put(bytes(self.strs) + b"\0"))
        out = []
        for p in programs:
            if p is None:
                out.append(None)
                continue
            if fallback is not None:
                p.words[2] = int(fallback)
            out.append((ffi.cast("int64_t *", self.words64(p.words)), strs))
        return out

    def forked(self):
        """The programs made so far are forked (each child has its own copy of their buffers):
        they go, so that the next chunk's forker inherits only its own."""
        self.arena.drop()
        self.strs, self.offsets, self.buffers, self.fragments = bytearray(), {}, {}, {}

    def drop(self):
        self.scratch.drop()
        self.arena.drop()
        self.buffers = {}


class Program:
    """The ops of one child (words, as the C runner reads them)."""

    def __init__(self, pool, report_fd):
        self.pool, self.words, self.regs = pool, [0, report_fd, 1], 0

    def reg(self):
        self.regs += 1
        if self.regs > 16:
            raise CrpyError("leaf program: out of registers")
        return self.regs - 1

    def op(self, kind, args=(), nr=0, check=NONE, expect=0, what=None, dst=None, regs=None):
        """regs: {argument index: register} for arguments known only when the child runs."""
        mask = 0
        if regs:
            for i, r in regs.items():
                mask |= (r + 1) << (8 * i)
        self.words += (kind | check << 8 | (dst + 1 if dst is not None else 0) << 16, nr, *args,
                       *_ZEROS[len(args):], mask, expect, self.pool.text(what) if what else -1)
        self.words[0] += 1

    def syscall(self, nr, *args, check=NONNEG, expect=0, what=None, dst=None, regs=None):
        self.op(SYSCALL, args, nr, check, expect, what, dst, regs)

    def path(self, path):
        return self.pool.buffer(os.fsencode(path), share=True)


_ZEROS = (0,) * 6
_TOUCHED = bytes(b"1"[0] if i & 0xC0 else b"0"[0] for i in range(256))


def _faults_armed():
    """Fault points other than the restorer's want the Python steps: no leaf is compiled."""
    fault = os.environ.get("CRPY_FAULT", "")
    return bool(fault) and not fault.startswith("restorer:")


def eligible(node, run):
    """Can `node`, about to be forked by this process, be restored by a compiled program?"""
    task = node.task
    if task is None or node.zombie or node.children or node.shares_files or node.helper_sid \
            or node.helper_pgid or getattr(run, "lazy_socket", None) or _faults_armed():
        return False
    plan = node.plan
    if plan is None or getattr(plan, "frame", None) is None or getattr(task, "threads", None) \
            or getattr(task, "aio_rings", None) or (task.root and task.root != "/"):
        return False
    if node.sid == node.pid or node.pgid == node.pid or node.sid != os.getsid(0) or node.pgid != os.getpgid(0):
        return False
    if run.sharers.get(node.pid, 0):
        return False
    return not any(a.pkey or a.lazy or (a.inherit and a.flags & premap._HUGE_FLAGS) for a in task.areas)


class Scratch:
    """Where this process fills the argument blocks of the leaves it forks, one after the other:
    an anonymous mapping as big as the block (most of it never written, so never backed), made
    zero again for each; written() gives its written pages as bytes."""

    def __init__(self):
        self.addr = self.size = 0

    def block(self, size):
        """A zero block of `size` bytes (a struct rst_args * cdata at self.addr)."""
        from crpy.kernel._sys import ffi

        size = (size + 4095) & ~4095
        if size > self.size:
            self.drop()
            self.addr = premap._syscall(NR.mmap, 0, size, premap.PROT_READ | premap.PROT_WRITE,
                                        premap.MAP_PRIVATE | premap.MAP_ANONYMOUS | premap.MAP_NORESERVE, -1, 0,
                                        what=lambda: "map the leaves' argument scratch")
            self.size = size
            premap._syscall(NR.madvise, self.addr, size, MADV_NOHUGEPAGE,
                            what=lambda: "keep the leaves' argument scratch in small pages")
        else:
            premap._syscall(NR.madvise, self.addr, self.size, MADV_DONTNEED,
                            what=lambda: "clear the leaves' argument scratch")
        self.used = size
        return ffi.cast("struct rst_args *", self.addr)

    def written(self):
        """[(offset, bytes)] of the runs of pages written since block() (present or swapped)."""
        import ctypes
        import re

        first, count = self.addr // PAGE, self.used // PAGE
        with open("/proc/self/pagemap", "rb", buffering=0) as f:
            entries = os.pread(f.fileno(), 8 * count, 8 * first)
        touched = entries[7::8].translate(_TOUCHED)     # bits 63, 62 of each entry: present, swapped
        return [(m.start() * PAGE, ctypes.string_at(self.addr + m.start() * PAGE, (m.end() - m.start()) * PAGE))
                for m in re.finditer(b"1+", touched)]

    def drop(self):
        if self.size:
            premap._syscall(NR.munmap, self.addr, self.size, what=lambda: "unmap the leaves' argument scratch")
            self.addr = self.size = 0


class Spawner:
    """One compiled leaf (`first`, a Program) made the forker of the others ([(pid, Program)]):
    its program starts by unmapping what no leaf needs of crpy's memory, then forks them with
    CLONE_PARENT (44_leaf_prog.c, OP_UNMAP and OP_SPAWN).  Their programs cannot fall back to
    Python (none is left there).  Call place() once every buffer the programs use exists (just
    before the fork): it lists what to unmap."""

    def __init__(self, pool, first, others, parent):
        from crpy.kernel._sys import ffi

        self.pool, self.first = pool, first
        finished = pool.finish([p for _, p in others], fallback=False)
        pids = pool.words64([pid for pid, _ in others])
        progs = pool.words64([int(ffi.cast("uintptr_t", f[0])) for f in finished])
        self.ranges = pool.words64([0] * (2 * MAX_UNMAP))
        head = Program(pool, 0)
        head.op(UNMAP, (self.ranges, 0))
        head.op(SPAWN, (pids, progs, len(others), int(ffi.cast("uintptr_t", finished[0][1])), parent))
        first.words[HEADER:HEADER] = head.words[HEADER:]
        first.words[0] += head.words[0]
        first.words[2] = 0                # (its own restore runs on without crpy's heap, too)

    def place(self, first_cdata, region):
        """Fill the unmap list of the forker's program (first_cdata: its int64_t[] as finished)."""
        from crpy.kernel._sys import ffi

        needed = sorted(self.pool.arena.spans() + list(_blobs.values()))
        ranges = _unneeded(needed, region)[:MAX_UNMAP]
        buf = ffi.cast("int64_t *", self.ranges)
        for i, (start, end) in enumerate(ranges):
            buf[2 * i], buf[2 * i + 1] = start, end - start
        first_cdata[HEADER + 3] = len(ranges)            # the UNMAP op's second argument
        log.debug("the forker leaf unmaps %d mappings (%d KiB) of crpy's", len(ranges),
                  sum(e - s for s, e in ranges) >> 10)


_KEEP_NAMES = ("[stack]", "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]")
TLS_ROOM = 1 << 20                 # below the thread pointer: the static TLS block


def _unneeded(needed, region):
    """[(start, end)] of this process's mappings that the forker leaf unmaps; needed: sorted
    [(address, size)] of the buffers its programs read (the Arena, the relocated blobs).  Kept:
    the special mappings ([heap] goes: nothing of the programs is there), every shared mapping
    (objects the tree shares), libc, ld.so and crpy's C module (with the bss after each), the
    TLS block (at the thread pointer), this task's restorer region (its own memory, where the
    leaves take their copy-on-write pages from), and every mapping that holds a needed buffer."""
    import bisect

    from crpy.kernel import _sys
    from crpy.restore import child

    libs = {os.path.realpath(_sys.__file__).encode()}
    starts = [a for a, _ in needed]
    longest = max((n for _, n in needed), default=0)
    fs = child.thread_pointer()
    with open("/proc/self/maps", "rb") as f:
        lines = f.read().splitlines()
    out, kept_lib_end = [], None
    for line in lines:
        parts = line.split(None, 5)
        start, end = (int(x, 16) for x in parts[0].split(b"-"))
        name = parts[5].strip() if len(parts) > 5 else b""
        lib = name in libs or name.endswith((b"/libc.so.6", b"/ld-linux-x86-64.so.2"))
        bss = not name and kept_lib_end == start
        kept_lib_end = end if lib else None
        if lib or bss or name.decode(errors="replace") in _KEEP_NAMES or parts[1][3:4] == b"s":
            continue
        if (region and start < region[1] and region[0] < end) or (start <= fs + PAGE and fs - TLS_ROOM < end):
            continue
        lo, hi = bisect.bisect_left(starts, start - longest), bisect.bisect_left(starts, end)
        if any(a + n > start for a, n in needed[lo:hi]):
            continue
        out.append((start, end))
    return out


def compile_leaf(node, run, pool, parent_slots):
    """The Program of leaf `node`'s whole restore, its buffers in `pool` (a Pool); None if it
    cannot be compiled (the child then runs crpy.restore.child)."""
    try:
        prog = _compile(node, run, pool, parent_slots)
        if prog is not None:
            log.debug("pid %d: its restore compiled for C (%d ops)", node.pid, prog.words[0])
        return prog
    except CrpyError as e:
        log.debug("pid %d restored in Python: %s", node.pid, e)
        return None


def _compile(node, run, pool, parent_slots):
    from crpy.restore import blob, child, exe, task_state
    from crpy.kernel._sys import ffi

    task, plan = node.task, node.plan
    prctls = task_state.prctls_only(task.state)
    if prctls is None:
        return None
    fd_ops = _fd_plan(task, run.keep_above, pool)
    if fd_ops is None:
        return None
    own_path, own = exe._own_exe()
    keep_exe = task.exe_path == own_path and exe._same_inode(os.stat(task.exe_path), own)
    if not keep_exe and any(a.path == own_path for a in task.areas):
        return None
    cow = {}
    for area in task.areas:
        if area.cow_runs:
            src = parent_slots.get((area.start, area.end))
            if src is None:
                return None
            cow[id(area)] = src
    prog = Program(pool, run.report_fd)
    prog.syscall(NR.mmap, plan.start, plan.length, 0, premap.MAP_PRIVATE | premap.MAP_ANONYMOUS |
                 premap.MAP_NORESERVE | premap.MAP_FIXED_NOREPLACE, -1, 0, check=FALLBACK, expect=plan.start)
    image, length = _relocated_blob(plan.blob)
    prog.syscall(NR.mprotect, plan.blob, (blob.blob().size + 4095) & ~4095, blob.PROT_RWX,
                 what="make the restorer blob executable")
    prog.op(MEMCPY, (plan.blob, image, length))
    if not _premap(prog, plan.slots, task.page_checks, cow):
        return None
    if task.umask is not None:
        prog.syscall(NR_UMASK, task.umask, check=NONE)
    if task.cwd:
        prog.syscall(NR_CHDIR, prog.path(task.cwd), what=f"cwd {task.cwd} of pid {task.pid}")
    for nr, args, what in fd_ops:
        prog.syscall(nr, *args, what=what)
    size = blob.args_size(blob.nr_siginfo(task))
    scratch = pool.scratch
    a = scratch.block(size)
    a.siginfo = scratch.addr + ffi.sizeof("struct rst_args")
    child._build_args(task, plan, run.report_fd, run.keep_above, exe.KEEP_INHERITED if keep_exe else 0,
                      (-1, -1, 0), a)
    a.siginfo = plan.args + ffi.sizeof("struct rst_args")           # where the child has them
    a.mm.auxv = plan.args + ffi.offsetof("struct rst_args", "auxv")
    prog.syscall(NR.mprotect, plan.args, (size + 4095) & ~4095, premap.PROT_READ | premap.PROT_WRITE,
                 what="make the restorer arguments writable")
    for off, data in scratch.written():      # a page at a time: siblings' pages are mostly alike
        for pos in range(0, len(data), PAGE):
            prog.op(MEMCPY, (plan.args + off + pos, prog.pool.buffer(data[pos:pos + PAGE], share=True), PAGE))
    if not keep_exe:
        r1, r2 = prog.reg(), prog.reg()
        prog.syscall(NR_OPENAT, AT_FDCWD, prog.path(task.exe_path), os.O_RDONLY | os.O_CLOEXEC,
                     dst=r1, what=f"open {task.exe_path}, the executable of pid {task.pid}")
        prog.syscall(NR_FCNTL, 0, F_DUPFD_CLOEXEC, run.keep_above, regs={0: r1}, dst=r2,
                     what=f"move the executable's fd above {run.keep_above}")
        prog.syscall(NR.close, 0, regs={0: r1}, what="close the executable's first fd")
        prog.op(STORE32, (plan.args + ffi.offsetof("struct rst_args", "mm", "exe_fd"), 0), regs={1: r2})
    for option, value in prctls:
        prog.syscall(NR.prctl, option, value, check=NONE)
    _ready_and_go(prog, node.pid, run)
    prog.op(JUMP, (plan.blob + blob.blob().sym("restorer_start"), plan.args))
    return prog


def _premap(prog, slots, checks, cow):
    """premap.premap_all's calls: map every slot, read (and check) the pages, protect; then close
    the pages images.  False if premap would read them in threads (a big task: no gain here) or
    a chunk is not tiled by this task's reads."""
    batches = list(premap._batches(slots))
    if sum(n for _, _, iovs, _ in batches for _, n in iovs) >= premap._PARALLEL_MIN:
        return False
    for slot in slots:
        src = cow.get(id(slot.area))
        _cached(prog, ("map", _area_key(slot.area, src is not None), slot.addr, src), _map,
                slot.area, slot.addr, src)
    fds = {}
    for path in sorted({b[0] for b in batches}):
        fds[path] = prog.reg()
        prog.syscall(NR_OPENAT, AT_FDCWD, prog.path(path), os.O_RDONLY | os.O_CLOEXEC,
                     dst=fds[path], what=f"open {path}")
    cuts = {}                                   # path -> [(file offset, length)] of its parts
    for path, offset, iovs, _ in batches:
        if checks and path in checks:
            cuts.setdefault(path, []).extend(_parts(offset, sum(n for _, n in iovs), checks[path][0]))
    crcs = {path: prog.pool.words64([0] * ((len(c) + 1) // 2)) for path, c in cuts.items()}   # uint32 each
    done = dict.fromkeys(cuts, 0)
    for path, offset, iovs, populate in batches:
        if populate:
            for addr, n in iovs:
                prog.syscall(NR.madvise, addr, n, premap.MADV_POPULATE_WRITE, check=NONE)
        want = sum(n for _, n in iovs)
        addrs, lens = prog.pool.words64([a for a, _ in iovs]), prog.pool.words64([n for _, n in iovs])
        what = f"{path}: cannot read {want} bytes at offset {offset}"
        if path not in cuts:
            prog.op(READ, (0, addrs, lens, len(iovs), offset), regs={0: fds[path]}, check=NONNEG, what=what)
            continue
        prog.op(READ_CRC, (0, addrs, lens, len(iovs), offset, checks[path][0]), regs={0: fds[path]},
                check=NONNEG, expect=crcs[path] + 4 * done[path], what=what)
        done[path] += len(_parts(offset, want, checks[path][0]))
    for path, (chunk_size, size, chunks) in sorted((checks or {}).items()):
        parts = [(off, n, k) for k, (off, n) in enumerate(cuts.get(path, []))]
        if not _verify(prog, path, chunk_size, size, chunks, parts, crcs.get(path)):
            return False
    for slot in slots:
        src = cow.get(id(slot.area))
        _cached(prog, ("protect", _area_key(slot.area, False), slot.addr, src is not None), _protect,
                slot.area, slot.addr, src is not None)
    for reg in fds.values():
        prog.syscall(NR.close, 0, regs={0: reg}, what="close a pages image")
    return True


def _parts(offset, length, chunk):
    """[(file offset, length)] of a read cut at the multiples of chunk (as crpy_pread_crc cuts it)."""
    out, pos, end = [], offset, offset + length
    while pos < end:
        stop = min((pos // chunk + 1) * chunk, end)
        out.append((pos, stop - pos))
        pos = stop
    return out


def _verify(prog, path, chunk_size, size, chunks, parts, crcs):
    """One VERIFY op for the chunks of `path` this task checks (pagecheck.verify's work): each
    chunk's digest joined from those of the parts [(file offset, length, index in crcs)] that
    tile it.  False if one is not tiled by this task's reads (pagecheck then hashes the file:
    the child runs Python)."""
    from crpy.images import digest

    table = []
    for i, expected in sorted(chunks.items()):
        lo, hi = i * chunk_size, min((i + 1) * chunk_size, size)
        pos, pieces = lo, []
        for off, n, k in sorted(set(parts)):
            if off + n <= pos or off >= hi:      # read twice (two areas showing the same pages)
                continue
            if off != pos:
                return False
            pieces += [k, n]
            pos += n
        if pos != hi or not pieces:
            return False
        line = digest.chunk_error(path, i, chunk_size, size, "crc32c", SENTINEL, expected).one_line()
        head, rest = line.split(f"{SENTINEL:#018x}", 1)
        cut = rest.index(f"{expected:#018x}") + 18
        table += [expected, len(pieces) // 2, prog.pool.text(head), prog.pool.text(rest[:cut]), prog.pool.text(rest[cut:])]
        table += pieces
    if table:
        prog.op(VERIFY, (prog.pool.words64(table), len(chunks), crcs))
    return True


def _area_key(area, runs):
    """What _map and _protect read of an area (runs: its pages' places too)."""
    return (area.kind, area.start, area.end, area.prot, area.flags, area.path, area.pgoff, area.madv,
            area.fdflags, area.inherit, bool(area.runs),
            (tuple((r[0], r[1]) for r in area.runs), tuple(map(tuple, area.cow_runs))) if runs else None)


def _cached(prog, key, make, *args):
    """The ops make(prog, *args) adds, made once per key for all the programs of a pool."""
    frag = prog.pool.fragments.get(key)
    if frag is None:
        start, n = len(prog.words), prog.words[0]
        make(prog, *args)
        frag = prog.pool.fragments[key] = (prog.words[start:], prog.words[0] - n)
    else:
        prog.words += frag[0]
        prog.words[0] += frag[1]


def _map(prog, area, addr, cow_src):
    """premap._map's calls for one slot."""
    what = f"premap the VMA at {area.start:#x}"
    if area.inherit:
        prog.syscall(NR.mremap, area.inherit, 0, area.length, premap.MREMAP_MAYMOVE | premap.MREMAP_FIXED, addr,
                     check=EQ, expect=addr, what=f"map the shared object of the VMA at {area.start:#x}")
    elif cow_src is not None:
        prog.syscall(NR.mremap, cow_src, area.length, area.length, premap.MREMAP_MAYMOVE | premap.MREMAP_FIXED,
                     addr, check=EQ, expect=addr, what=f"take the parent's pages of the VMA at {area.start:#x}")
        prog.syscall(NR.mprotect, addr, area.length, premap._fill_prot(area), what=what)
        for off, n in premap._gaps(area.length, [(r[0], r[1]) for r in area.runs] + area.cow_runs):
            prog.syscall(NR.madvise, addr + off, n, MADV_DONTNEED, what=f"zero pages at {area.start + off:#x}")
    else:
        fd = None
        if area.kind == "anon":
            flags = premap._anon_type(area) | premap.MAP_ANONYMOUS | (area.flags & premap._ANON_FLAGS)
        elif area.kind == "aio":
            flags = premap.MAP_PRIVATE | premap.MAP_ANONYMOUS
        elif area.kind == "anon_shared":
            flags = premap.MAP_SHARED | premap.MAP_ANONYMOUS | (area.flags & (premap.MAP_NORESERVE | premap._HUGE_FLAGS))
        else:
            shared = area.kind == "file_shared"
            fd = prog.reg()
            prog.syscall(NR_OPENAT, AT_FDCWD, prog.path(area.path),
                         premap._file_mode(area, shared) | os.O_CLOEXEC, dst=fd,
                         what=f"open {area.path} to map it")
            flags = premap.MAP_SHARED if shared else premap.MAP_PRIVATE
        prog.syscall(NR.mmap, addr, area.length, premap._fill_prot(area), flags | premap.MAP_FIXED,
                     -1 if fd is None else 0, area.pgoff if fd is not None else 0,
                     regs={4: fd} if fd is not None else None, check=EQ, expect=addr, what=what)
        if fd is not None:
            prog.syscall(NR.close, 0, regs={0: fd}, what=f"close {area.path}")
            prog.regs -= 1                  # its register is free again
    _madvise(prog, area, addr, premap._BEFORE_FILL)


def _protect(prog, area, addr, cow):
    if premap._fill_prot(area) != area.prot or area.inherit or cow:
        prog.syscall(NR.mprotect, addr, area.length, area.prot, what=f"mprotect the VMA at {area.start:#x}")
    _madvise(prog, area, addr, premap._AFTER_FILL)
    if area.flags & premap.MAP_LOCKED:
        prog.syscall(NR_MLOCK, addr, area.length, what=f"mlock the VMA at {area.start:#x}")


def _madvise(prog, area, addr, advices):
    for adv in advices:
        if area.madv and area.madv & (1 << adv):
            prog.syscall(NR.madvise, addr, area.length, adv,
                         what=f"madvise({adv}) the VMA at {area.start:#x} as it was at dump time")


def _fd_plan(task, keep_above, pool):
    """[(syscall, args, what)] that put the task's fds in place (fdtable.restore_fds), when every
    one is an object held open for the whole tree; None otherwise."""
    from crpy import resources
    from crpy.resources import fdtable, fown, locks

    fdinfos = fdtable.read_fdinfo(task.images_dir, task.pid)
    if task.images_dir not in pool.files:           # (read once for all the leaves of a pool)
        pool.files[task.images_dir] = fdtable._parse_files(task.images_dir)
    _, files, has_tty = pool.files[task.images_dir]
    shared = fdtable.inherited()
    if has_tty or shared is None or locks.load(task.images_dir, task.pid):
        return None
    ops, placed, kinds, wanted = [], {}, set(), []
    for e in sorted(fdinfos, key=lambda e: e.fd):
        entry = files.get(e.id)
        if e.fd >= keep_above or entry is None or e.fd in wanted:
            return None
        src = placed.get(e.id, shared.fds.get(e.id))
        if src is None or src == e.fd or not fown.is_plain(entry):
            return None
        kinds.add(fdtable.kind_of_entry(entry))
        ops.append((NR_DUP3, (src, e.fd, 0 if e.flags & fdtable.FD_CLOEXEC else os.O_CLOEXEC),
                    f"cannot place fd {e.fd}"))
        placed[e.id] = e.fd
        wanted.append(e.fd)
    if not all(resources.supported(k) and not hasattr(resources.module(k), "after_placed") for k in kinds):
        return None
    for lo, hi in fdtable.fd_gaps(wanted, keep_above):
        ops.append((NR_CLOSE_RANGE, (lo, hi, 0), "close the fds the task did not have"))
    return ops


def _ready_and_go(prog, pid, run):
    """fork._ready_and_wait's calls: no parent-death signal, "ok PID", then the go byte."""
    prog.syscall(NR.prctl, PR_SET_PDEATHSIG, 0, check=NONE)
    line = f"ok {pid}\n".encode()
    prog.syscall(NR.write, run.report_fd, prog.pool.buffer(line), len(line), check=EQ, expect=len(line),
                 what="say it is ready")
    got = prog.pool.buffer(b"\0")
    prog.syscall(NR.read, run.go_fd, got, 1, check=EXIT, expect=1)
    prog.op(EXPECT_BYTE, (got, ord("g")))
