"""The dump-side parasite, as the dump pipeline uses it.

    p = Parasite.infect(pid)          # task seized and stopped (crpy.kernel.ptrace.seize)
    p.ping()
    p.dump_pages(runs, out_fd)        # [(vaddr, length)] -> bytes written to out_fd
    p.dump_pages(runs, out_fd, fed)   # and crc32c digests of the file's chunks into `fed`
    p.sigactions(), p.misc(), p.drain_fds(fds)
    p.ask(SIGACTS); p.ask(MISC)       # queued: answered while the caller does other work;
    p.sigactions(), p.misc()          # ... these then read the answers (one round trip, not two)
    p.cure()                          # task as seized: still seized, at an event-stop

Pages travel without a copy through Python: the parasite vmsplices the task's pages into
pipes whose both ends it received by SCM_RIGHTS (so a dead dumper can never mean EPIPE/SIGPIPE),
and the dumper splices them into the image file.  If the dumper dies at any moment, the
parasite sees EOF and cures itself (parasite-recipe.md).
"""

import errno
import os
import struct
import typing

from crpy.dump import infect, infect_cure
from crpy.dump import infect_channel as ch
from crpy.errors import ParasiteError

F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
MAX_PIPE = 64 << 20
MIN_PIPE = 1 << 20
CHUNK_PIPE = 32 << 20  # each of dump_pages' two pipes, and its chunks when not hashing
HASHED_CHUNK = 4 << 20  # its chunks when the parasite hashes them: still in the L3 cache when spliced
MAX_IOVS = (ch.CMD_BUF - ch.CMD.size) // 16
_THE_PIPE = -1  # DUMP's fd: the pipe the first DUMP brought (parasite.h)

MISC_FIELDS = ("pid tid ppid pgid sid umask personality dumpable no_new_privs pdeathsig child_subreaper "
               "timerslack thp_disable seccomp securebits keepcaps brk tid_address tid_address_ret "
               "ruid euid suid rgid egid sgid fsuid fsgid altstack_ret").split()
_MISC = struct.Struct("<%dq QiiQ 3q 12q 32Q 16q 16s q qQ" % len(MISC_FIELDS))
RLIMIT_NAMES = ("cpu fsize data stack core rss nproc nofile memlock as locks sigpending msgqueue nice "
                "rtprio rttime").split()


def pipe_size_limit():
    """The largest page pipe, within the system's limit (read once per run: a tree asks per task)."""
    global _pipe_limit
    if _pipe_limit is None:
        try:
            with open("/proc/sys/fs/pipe-max-size") as f:
                _pipe_limit = max(MIN_PIPE, min(MAX_PIPE, int(f.read())))
        except (OSError, ValueError):
            _pipe_limit = MIN_PIPE
    return _pipe_limit


_pipe_limit = None


class Parasite:
    def __init__(self, saved, channel):
        self.pid = saved.pid
        self._saved, self._chan = saved, channel
        self._pipes = []  # [_Pipe]: the page pipes, the parasite holds both ends of each
        self._busy = False  # a command may still be running in the parasite
        self._asked = []  # commands sent by ask() whose answers are not read yet, in order
        self._cure_sock = None  # begin_cure() done: the channel's fd in the task

    @classmethod
    def infect(cls, pid, idle_ms=30000, vmas=None, seccomp=None):
        """Load and start the parasite in `pid`, which must be seized and at an event-stop
        (vmas, seccomp: its maps and seccomp mode as read since it stopped, crpy.dump.infect.infect)."""
        saved, channel = infect.infect(pid, idle_ms, vmas, seccomp)
        return cls(saved, channel)

    @classmethod
    def infect_all(cls, tasks, idle_ms=30000):
        """infect() of several tasks at once, [(pid, vmas, seccomp)] -> [Parasite]
        (crpy.dump.infect.infect_all: their stops overlap)."""
        return [cls(saved, channel) for saved, channel in infect.infect_all(tasks, idle_ms)]

    @property
    def saved(self):
        """Registers, XSAVE area and signal mask as seized (Saved.regs/.xstate/.sigmask)."""
        return self._saved

    def ping(self, value=0):
        ret, _, _ = self._chan.call(ch.PING, (value,))
        if ret != value + 1:
            raise ParasiteError(f"pid {self.pid}: bad ping answer {ret}")

    # ---- pages ----

    def _open_pipes(self, nbytes, chunk):
        """The page pipes for a dump_pages of nbytes in chunks of at most `chunk` bytes: one
        while a chunk (also at most a pipe's size, grown for nbytes up to CHUNK_PIPE) holds them
        all, else two, filled and drained in turn.
        Both ends of each are handed to the parasite (SCM_RIGHTS): holding the read end too, the
        task can never get EPIPE/SIGPIPE from it, even if this process dies; and no /proc access
        from the task is needed (a task of another user could not open ours).  The first pipe
        goes with the first DUMP (no round trip of its own; the parasite names it _THE_PIPE), the
        second with a RECVFD that says its fd in the task.  Returns the fds the next DUMP brings."""
        fds = None
        if not self._pipes:
            self._pipes.append(_new_pipe(nbytes, _THE_PIPE))
            fds = [self._pipes[0].w, self._pipes[0].r]
        else:               # empty between calls: grown for a larger call than the first
            self._pipes = [p._replace(size=_grow_pipe(p.w, nbytes, CHUNK_PIPE)) for p in self._pipes]
        if len(self._pipes) == 1 and nbytes > min(chunk, self._pipes[0].size):
            second = _new_pipe(nbytes, None)
            try:
                task_fd, _, _ = self._chan.call(ch.RECVFD, fds=[second.w, second.r])
            except BaseException:
                second.close()
                raise
            self._pipes.append(second._replace(task_fd=task_fd))
        return fds

    def dump_pages(self, runs, out_fd, fed=None):
        """Write the task's memory `runs` [(vaddr, length)], in order, to out_fd; -> bytes.
        fed (crpy.images.digest._Fed): the parasite also computes the crc32c digests of the
        file's chunks as it splices the pages, from fed.state() on, and feeds them to it.

        Pipelined over two pipes: the parasite vmsplices (and hashes) chunk i+1 into one while
        this process splices chunk i out of the other (a splice into a file holds its pipe's
        mutex until it is done: a vmsplice into the same pipe would wait for it).  Hashed chunks
        are small (HASHED_CHUNK): the hash has just read chunk i+1 into the CPU's last-level
        cache when the splice copies it, so the page data crosses the memory bus once, not
        twice (splice time 1 GiB, /dev/shm, load 3.5: 451 ms hashed in 4 MiB chunks, 523 ms in
        32 MiB ones, 480 ms not hashed)."""
        nbytes = sum(length for _, length in runs)
        if not nbytes:
            return 0        # no DUMP: the first pipe must go with one
        chunk = CHUNK_PIPE if fed is None else HASHED_CHUNK
        fds = self._open_pipes(nbytes, chunk)
        pipes = self._pipes
        chunk = min([chunk] + [p.size for p in pipes])
        total, pending = 0, None
        # the first command says where the digest of the file's current chunk is; the rest go on
        hashing = (ch.HASH | ch.HASH_SET, *fed.state()) if fed is not None else (0,)
        self._busy = True  # until the end: an error leaves a DUMP in flight
        for k, (iovs, nbytes) in enumerate(_chunks(runs, chunk)):
            pipe = pipes[k % len(pipes)]
            self._chan.send(ch.DUMP, (pipe.task_fd, *hashing), _pack_iovs(iovs), fds)
            hashing, fds = (ch.HASH,) if fed is not None else (0,), None
            if pending is not None:
                total += self._drain(*pending, out_fd, fed)
            pending = (pipe.r, nbytes)
        if pending is not None:
            total += self._drain(*pending, out_fd, fed)
        self._busy = False
        return total

    def vmsplice_into(self, pipe_w, iovs, nbytes):
        """Page references of `iovs` into pipe_w (which must hold nbytes), kept there for the
        caller to splice out later; the parasite's copy of pipe_w is closed again."""
        task_fd, _, _ = self._chan.call(ch.RECVFD, fds=[pipe_w])
        try:
            ret, _, _ = self._chan.call(ch.DUMP, (task_fd,), _pack_iovs(iovs))
        finally:
            self._chan.call(ch.CLOSE, (task_fd,))
        if ret != nbytes:
            raise ParasiteError(f"pid {self.pid}: vmsplice moved {ret} of {nbytes} bytes")

    def _drain(self, pipe_r, nbytes, out_fd, fed=None):
        ret, data, _ = self._chan.receive(ch.DUMP)
        if ret != nbytes:
            raise ParasiteError(f"pid {self.pid}: vmsplice moved {ret} of {nbytes} bytes")
        if fed is not None:
            if len(data) < 8 or len(data) % 4:
                raise ParasiteError(f"pid {self.pid}: page digests of {len(data)} bytes")
            crc, into, *done = struct.unpack("<%dI" % (len(data) // 4), data)
            fed.fed(crc, into, done)
        if hasattr(out_fd, "splice_from"):      # a page sink other than a file (crpy.pageserver.sink)
            out_fd.splice_from(pipe_r, nbytes)
        else:
            _splice_all(pipe_r, out_fd, nbytes)
        return nbytes

    # ---- state only the task can see ----

    def ask(self, op, args=(), data=b""):
        """Send command `op` now and read its answer later (the method of that command reads it):
        the parasite answers the commands in the order sent, so several asked in a row cost one
        round trip, and the caller works meanwhile.  FINISH may be asked last: cure() reads it."""
        self._chan.send(op, args, data)
        self._asked.append(op)

    def _call(self, op, args=(), data=b""):
        """The answer to `op`: the one asked earlier, or sent and read now."""
        if not self._asked:
            return self._chan.call(op, args, data)
        if self._asked[0] != op:
            raise ParasiteError(f"pid {self.pid}: command {op} read before the answer to {self._asked[0]}")
        self._asked.pop(0)
        return self._chan.receive(op)

    def sigactions(self):
        """[(handler, flags, restorer, mask)] for signals 1..64."""
        _, data, _ = self._call(ch.SIGACTS)
        return [struct.unpack_from("<4Q", data, 32 * i) for i in range(64)]

    def misc(self):
        _, data, _ = self._call(ch.MISC)
        return _parse_misc(data)

    def posix_timers(self, ids):
        """{id: (interval_ns, value_ns, overrun)} of the task's POSIX timers `ids`."""
        out = {}
        for i in range(0, len(ids), ch.MAX_TIMERS):
            batch = list(ids[i:i + ch.MAX_TIMERS])
            _, data, _ = self._call(ch.TIMERS, (), _pack_timer_ids(batch))
            for k, tid in enumerate(batch):
                ret, isec, insec, vsec, vnsec, overrun = struct.unpack_from("<6q", data, 48 * k)
                if ret < 0:
                    raise ParasiteError(f"pid {self.pid}: timer_gettime({tid}): {os.strerror(-ret)}")
                out[tid] = (isec * 10**9 + insec, vsec * 10**9 + vnsec, max(overrun, 0))
        return out

    def ask_timers(self, ids):
        """posix_timers(ids) asked now (ask)."""
        for i in range(0, len(ids), ch.MAX_TIMERS):
            self.ask(ch.TIMERS, (), _pack_timer_ids(ids[i:i + ch.MAX_TIMERS]))

    def drain_fds(self, fds):
        """Copies of the task's `fds` in this process (same open files), in the same order."""
        out = []
        try:
            for i in range(0, len(fds), ch.MAX_FDS):
                batch = list(fds[i:i + ch.MAX_FDS])
                _, _, got = self._chan.call(ch.DRAIN_FDS, (), struct.pack("<%di" % len(batch), *batch),
                                            nfds=len(batch))
                out += got
                if len(got) != len(batch):
                    raise ParasiteError(f"pid {self.pid}: asked for {len(batch)} fds, got {len(got)}")
        except BaseException:
            for fd in out:
                os.close(fd)
            raise
        return out

    def userfaultfd(self, flags):
        """A new userfaultfd of the task's mm, in this process only (the task closed its copy).
        A task without CAP_SYS_PTRACE (vm.unprivileged_userfaultfd=0) gets EPERM unless it asks
        for UFFD_USER_MODE_ONLY: asked for then, which async write-protect does not notice (the
        kernel clears the bit itself, on any fault, without handle_userfault)."""
        try:
            _, _, got = self._chan.call(ch.UFFD, (flags,), nfds=1)
        except ParasiteError as e:
            if getattr(e, "errno", None) != errno.EPERM:
                raise
            from crpy.kernel.uffd import UFFD_USER_MODE_ONLY

            _, _, got = self._chan.call(ch.UFFD, (flags | UFFD_USER_MODE_ONLY,), nfds=1)
        if len(got) != 1:
            raise ParasiteError(f"pid {self.pid}: userfaultfd() sent {len(got)} fds")
        return got[0]

    # ---- the end ----

    def begin_cure(self):
        """The first half of cure(), when no answer is left unread (else cure() does it all):
        the task is interrupted and takes its stop while the caller works on; cure() then ends it."""
        if self._busy or self._asked not in ([], [ch.FINISH]) or self._cure_sock is not None:
            return
        try:
            self._cure_sock = infect_cure.begin_cure(self._saved, self._chan, finish_sent=bool(self._asked))
        except BaseException:
            self._busy = True                # cure() removes it by force
            raise
        self._asked = []

    def cure(self):
        """Unload the parasite; the task is left seized, at an event-stop, exactly as seized.
        If the normal path fails, the parasite is removed by force (same end state)."""
        if self._busy or self._asked not in ([], [ch.FINISH]):  # it may be blocked on a full pipe,
            return self.abort()        # or answers are unread: do not wait for it
        self._close_pipe()
        try:
            if self._cure_sock is None:
                infect_cure.cure(self._saved, self._chan, finish_sent=bool(self._asked))
            else:
                infect_cure.finish_cure(self._saved, self._chan, self._cure_sock)
        except ParasiteError:
            self.abort()
            raise
        finally:
            self._chan.close()

    @property
    def cure_begun(self):
        """begin_cure() done and nothing else pending: cure_all can take it."""
        return self._cure_sock is not None and not self._busy and not self._asked

    @staticmethod
    def cure_all(parasites):
        """cure() of several parasites whose cure began (cure_begun), at once: their tasks are
        taken through its stops together (infect_cure.finish_cures).  If that fails, the ones
        not cured yet are removed by force and the error raised."""
        if not all(p.cure_begun for p in parasites):
            raise ParasiteError("cure_all: a parasite whose cure did not begin")
        for p in parasites:
            p._close_pipe()
        try:
            infect_cure.finish_cures([(p._saved, p._chan, p._cure_sock) for p in parasites])
        except BaseException:
            for p in parasites:
                if p._chan.conn is not None:          # not cured yet
                    infect.settle(p._saved)
                    try:
                        p.abort()
                    except Exception as e:          # keep the first error; say this one
                        from crpy.log import log

                        log.error("pid %d: undoing the infection failed too: %s", p.pid, e)
            raise

    def abort(self):
        """Forced unload without the parasite's help (after an error).  The task is stopped
        first: closing the channel while it runs would make the parasite cure itself."""
        try:
            infect_cure.force_unload(self._saved)
        finally:
            self._close_pipe()
            self._chan.close()

    def _close_pipe(self):
        while self._pipes:
            self._pipes.pop().close()


class _Pipe(typing.NamedTuple):
    r: int
    w: int
    size: int
    task_fd: int          # its write end in the task, for DUMP

    def close(self):
        os.close(self.r)
        os.close(self.w)


def _new_pipe(nbytes, task_fd):
    """A _Pipe grown to hold nbytes, at most CHUNK_PIPE (_grow_pipe)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        return _Pipe(r, w, _grow_pipe(w, nbytes, CHUNK_PIPE), task_fd)
    except BaseException:
        os.close(r)
        os.close(w)
        raise


def _grow_pipe(fd, nbytes=None, most=MAX_PIPE):
    """The pipe's size once grown to hold nbytes (None: as large as the system allows), at most
    `most` and within the system's limit.  A pipe whose own size holds them is left as it is:
    F_SETPIPE_SZ allocates a new page array, wasted on a task of a few pages."""
    import fcntl

    want = min(pipe_size_limit(), most)
    if nbytes is not None:
        want = min(want, 1 << max(nbytes - 1, 1).bit_length())
    have = fcntl.fcntl(fd, F_GETPIPE_SZ)
    if want <= have:
        return have
    while True:
        try:
            return fcntl.fcntl(fd, F_SETPIPE_SZ, want)
        except OSError:
            if want <= MIN_PIPE:
                return fcntl.fcntl(fd, F_GETPIPE_SZ)  # keep what we have
            want //= 2


def _chunks(runs, limit):
    """Group runs into commands of at most `limit` bytes and MAX_IOVS iovecs each."""
    iovs, nbytes = [], 0
    for addr, length in runs:
        while length:
            take = min(length, limit - nbytes)
            iovs.append((addr, take))
            nbytes += take
            addr += take
            length -= take
            if nbytes == limit or len(iovs) == MAX_IOVS:
                yield iovs, nbytes
                iovs, nbytes = [], 0
    if iovs:
        yield iovs, nbytes


def _pack_timer_ids(ids):
    return struct.pack("<%di" % len(ids), *ids)


def _pack_iovs(iovs):
    return struct.pack("<%dQ" % (2 * len(iovs)), *[x for iov in iovs for x in iov])


def _splice_all(src, dst, nbytes):
    while nbytes:
        n = os.splice(src, dst, nbytes)
        if n <= 0:
            raise ParasiteError(f"splice from the page pipe returned {n} with {nbytes} bytes left")
        nbytes -= n


def _parse_misc(data):
    v = _MISC.unpack_from(data)
    n = len(MISC_FIELDS)
    out = dict(zip(MISC_FIELDS, v[:n]))
    out["altstack"] = (v[n], v[n + 1], v[n + 3])  # sp, flags, size
    p = n + 4
    rets, times = v[p:p + 3], v[p + 3:p + 15]
    out["itimers"] = [None if rets[i] else tuple(times[4 * i:4 * i + 4]) for i in range(3)]
    p += 15
    lims, lrets = v[p:p + 32], v[p + 32:p + 48]
    out["rlimits"] = {name: (None if lrets[i] else (lims[2 * i], lims[2 * i + 1]))
                      for i, name in enumerate(RLIMIT_NAMES)}
    out["name"] = v[p + 48].split(b"\0", 1)[0].decode(errors="replace")
    out["membarrier"] = v[p + 49]          # REGISTER_* bits, or -errno
    out["xcomp_perm"] = v[p + 51] if v[p + 50] == 0 else 0    # XSAVE features permitted
    return out
