"""Digests of the images of a dump: written by the dump into crpy-digests, checked before a restore.

Every image file of the directory (page data included) is cut into CHUNK_SIZE pieces and each
piece gets a digest (64 bits wide in the file), so a damaged image is named with the byte range
that differs.  The data is never copied through Python objects.  The hash is crc32c where the
CPU has SSE4.2 (crpy.kernel.crc32c: the crc32 instruction, and AVX-512 VPCLMULQDQ folding where
present, ~30 GB/s from cache): the parasite computes it where the pages already are, as it
splices them into the pipe (_Fed), so the dump never reads page data back; the other images are
hashed over their page cache, and the restore's check reads every image through a cache-sized
buffer in C, the GIL released -- but for the page chunks a restored task reads whole: that task
hashes them as it reads them into place (crpy.restore.pagecheck), so they are read once.  Without SSE4.2: xxh3_64 of python-xxhash over a read-only
mapping, a window at a time, and zlib.crc32 without xxhash (bench/digests.py measures them all).
The file names its hash and the version of its format (VERSION: digests of older crpys, format 1
without crc32c, are still checked; a newer format is refused).

crpy-digests has no .img suffix: criu and crit never open it, so the images stay CRIU's.  Its head
carries a digest of its own entries, so damage to the file itself is told apart from damage to an
image.  One file per images directory: a pre-dump chain would have one in each directory.

    rec = Recorder(images_dir)
    f = rec.follow(path) ... f.rewritten(off, n) ... f.close()   # pages, hashed as they land
    f = rec.follow(path, fed=True)        # or crc32c digests fed by the writer (f.fed_by_writer)
    rec.hash_written()                    # in the background, the big files written so far
    rec.write()                           # the rest, then crpy-digests
    damaged_images(images_dir) -> [ImageError]   # one per damaged image; [] when intact
    damaged_images(dir, names, skip_chunks)      # some images; chunks the tasks check skipped
    c = ImagesCheck(dir, ...); c.hash(); c.errors()   # the same in steps (hash() on a thread)
    chunk_error(path, i, ...)                    # the one line of a damaged chunk
"""

import mmap
import os
import struct
import threading
import time
import zlib
from collections import namedtuple

from crpy.errors import ImageError
from crpy.images import framing, magic
from crpy.log import log

FILE_NAME = magic.kind("digests").pattern
VERSION = 2                        # of crpy-digests: 1 (no version field) knew xxh3_64 and crc32
_ALGOS = {1: ("xxh3_64", "crc32"), 2: ("crc32c", "xxh3_64", "crc32")}
CHUNK_SIZE = 1 << 20
_WINDOW = 4 << 20                  # bytes mapped at a time: mapped page cache counts in crpy's RSS
# only images this big are worth a background thread while the dump goes on
_BACKGROUND_MIN = 4 << 20
_CHECK_THREADS = 2                 # the restore's check hashes a big image in this many parts

HINT_DAMAGED = ("the images were changed or damaged since the dump (disk, copy, network): dump "
                "again, or restore with --skip-integrity to take them as they are")
HINT_MISSING = ("images from criu or another tool have no crpy-digests: restore them with "
                "--skip-integrity; images dumped by crpy lost theirs")

# size the dump wrote, chunk digests, and (size, mtime, inode) when hashed: changed since?
FileDigest = namedtuple("FileDigest", "size chunks stamp")


class DigestsMissing(ImageError):
    """The directory has no crpy-digests (images of another tool, or the file was lost)."""


def _xxh3_64():
    try:
        import xxhash
    except ImportError:
        return None
    return xxhash.xxh3_64_intdigest


def hash_function(algo):
    """The C function (buffer -> int) of a digest algorithm named in crpy-digests."""
    if algo == "crc32c":
        from crpy.kernel.crc32c import crc32c

        return crc32c
    fn = _xxh3_64() if algo == "xxh3_64" else zlib.crc32 if algo == "crc32" else None
    if fn is None:
        hint = "pip install xxhash" if algo == "xxh3_64" else "written by a newer crpy?"
        raise ImageError(FILE_NAME, f"digest algorithm {algo!r} is not available here", hint=hint)
    return fn


def _crc32c_fast():
    from crpy.kernel.crc32c import fast

    return fast()


def default_algo():
    """crc32c where the CPU has its instruction (the parasite computes it: see the top)."""
    return "crc32c" if _crc32c_fast() else "xxh3_64" if _xxh3_64() is not None else "crc32"


def is_image_name(name):
    """Does the dump's digest cover this file (every image, not logs, not crpy-digests)?"""
    return name != FILE_NAME and (name.endswith(".img") or magic.kind_by_filename(name) is not None)


def image_names(images_dir):
    names = []
    for entry in os.scandir(images_dir):
        if is_image_name(entry.name) and entry.is_file(follow_symlinks=False):
            names.append(entry.name)
    return sorted(names)


def _stamp(st):
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def file_digest(path, algo, chunk_size=CHUNK_SIZE, threads=1):
    """FileDigest of one file: a digest per chunk_size bytes, hashed over a read-only mapping;
    a big file in `threads` parts at once (the restore's check, which nothing else waits on)."""
    fn = hash_function(algo)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        size = st.st_size
        parts = threads if size >= threads * _WINDOW else 1
        step = -(-size // parts // chunk_size) * chunk_size if size else 0
        bounds = [(min(i * step, size), min((i + 1) * step, size)) for i in range(parts)]
        results = [None] * parts

        def hash_part(i):
            try:
                results[i] = _hash_range(fd, fn, bounds[i][0], bounds[i][1], chunk_size, algo)
            except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
                results[i] = e

        helpers = [threading.Thread(target=hash_part, args=(i,), daemon=True) for i in range(1, parts)]
        for t in helpers:
            t.start()
        hash_part(0)
        for t in helpers:
            t.join()
        for r in results:
            if isinstance(r, Exception):
                raise r
        return FileDigest(size, [c for r in results for c in r], _stamp(st))
    finally:
        os.close(fd)


def _hash_range(fd, fn, start, end, chunk_size=CHUNK_SIZE, algo=None):
    """Digests of the chunks of bytes [start, end) of fd (start a multiple of chunk_size)."""
    if algo == "crc32c":                   # the whole loop in C
        from crpy.kernel.crc32c import file_chunks

        return file_chunks(fd, start, end, chunk_size)
    chunks = []
    for base in range(start, end, _WINDOW):
        length = min(_WINDOW, end - base)
        # MAP_POPULATE: the page tables in one go, not one fault per page.  Building and tearing
        # down the 4 KiB page tables is most of the cost (~120 of ~200 ms per GiB); other window
        # sizes, no MAP_POPULATE or preadv into a reused buffer measured no better (README)
        with mmap.mmap(fd, length, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ,
                       offset=base) as window:
            view = memoryview(window)
            try:
                chunks += [fn(view[off:off + chunk_size]) for off in range(0, length, chunk_size)]
            finally:
                view.release()
    return chunks


class _Follower:
    """A file being written front to back (pages-N.img): the recorder's one hashing thread
    (_FollowWorker) hashes each chunk as soon as the file has grown past it, beside the writing;
    bytes rewritten later (rewritten()) are hashed again at close().  Only the last few MiB are
    left to hash when the writer is done.  No thread of its own: a tree of 128 small tasks
    follows 128 files, and a thread started per file cost more than hashing them."""

    MIN_STEP = 4 * CHUNK_SIZE      # hash at least this much at a time

    def __init__(self, path, algo, on_done, worker):
        self.path, self.fn, self.on_done, self.worker = path, hash_function(algo), on_done, worker
        self.algo = algo
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.chunks, self.redo, self.error = [], set(), None
        self.lock = threading.Lock()   # held by whoever hashes: the worker, or close()
        self.closed = False
        worker.add(self)

    def hash_grown(self):
        """The worker's turn: hash the complete chunks written since the last turn, if enough."""
        with self.lock:
            if self.closed or self.error is not None:
                return False
            try:
                size = os.fstat(self.fd).st_size
                end = size - size % CHUNK_SIZE
                done = len(self.chunks) * CHUNK_SIZE
                if end - done < self.MIN_STEP:
                    return False
                self.chunks += _hash_range(self.fd, self.fn, done, end, algo=self.algo)
                return True
            except BaseException as e:  # noqa: BLE001 - the file is hashed again whole at the end
                self.error = e
                return False

    def rewritten(self, offset, length):
        """The writer wrote [offset, offset+length) again: those chunks are hashed at close()."""
        if length > 0:
            self.redo.update(range(offset // CHUNK_SIZE, (offset + length - 1) // CHUNK_SIZE + 1))

    def _stop(self):
        with self.lock:
            self.closed = True
        self.worker.remove(self)

    def abandon(self):
        """The writing failed: stop, hash nothing more."""
        self._stop()
        os.close(self.fd)

    def close(self):
        """The file is complete: hash its tail and the rewritten chunks; FileDigest or None."""
        self._stop()
        try:
            if self.error is not None:
                return None
            st = os.fstat(self.fd)
            self.chunks += _hash_range(self.fd, self.fn, len(self.chunks) * CHUNK_SIZE, st.st_size,
                                       algo=self.algo)
            _redo(self.fd, self.fn, self.algo, self.chunks, self.redo, st.st_size)
            result = FileDigest(st.st_size, self.chunks, _stamp(st))
            self.on_done(self.path, result)
            return result
        finally:
            os.close(self.fd)


def _redo(fd, fn, algo, chunks, redo, size):
    """Hash the chunks numbered in redo (written again) anew, from the file."""
    for i in sorted(redo):
        if i < len(chunks):
            chunks[i] = _hash_range(fd, fn, i * CHUNK_SIZE, min((i + 1) * CHUNK_SIZE, size), algo=algo)[0]


class _Fed:
    """A file written front to back whose crc32c chunk digests its writer computes (the parasite,
    as it splices the pages: crpy.dump.parasite): state() is where the running digest is,
    fed() takes the writer's news, update() hashes bytes the writer wrote itself; bytes
    rewritten later are hashed again from the file at close(), and a file that does not end
    where the feeding did is hashed whole then (never a wrong digest)."""

    fed_by_writer = True

    def __init__(self, path, on_done):
        self.path, self.on_done = path, on_done
        self.chunks, self.crc, self.into, self.redo = [], 0, 0, set()

    def state(self):
        """(crc32c of the bytes of the current chunk so far, how many they are)"""
        return self.crc, self.into

    def fed(self, crc, into, done):
        """The writer's news: `done` chunks completed, then (crc, into) the current one."""
        self.chunks += done
        self.crc, self.into = crc, into

    def update(self, data):
        from crpy.kernel.crc32c import crc32c

        view = memoryview(data)
        while view:
            take = min(len(view), CHUNK_SIZE - self.into)
            self.crc, self.into = crc32c(view[:take], self.crc), self.into + take
            view = view[take:]
            if self.into == CHUNK_SIZE:
                self.fed(0, 0, [self.crc])

    rewritten = _Follower.rewritten

    def abandon(self):
        pass

    def close(self):
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if len(self.chunks) * CHUNK_SIZE + self.into != st.st_size:
                log.info("%s: %d bytes, its writer hashed %d: hashed again whole", self.path, st.st_size,
                         len(self.chunks) * CHUNK_SIZE + self.into)
                result = file_digest(self.path, "crc32c")
            else:
                chunks = self.chunks + ([self.crc] if self.into else [])
                _redo(fd, None, "crc32c", chunks, self.redo, st.st_size)
                result = FileDigest(st.st_size, chunks, _stamp(st))
        finally:
            os.close(fd)
        self.on_done(self.path, result)
        return result


class _FollowWorker:
    """One thread per recorder that hashes the growing files it follows, started with the first
    one; it sleeps while no file is followed."""

    POLL = 0.002                   # seconds between looks at the files' sizes

    def __init__(self):
        self.following, self.thread = [], None
        self.cond = threading.Condition()

    def add(self, follower):
        with self.cond:
            self.following.append(follower)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True, name="crpy-digest-follow")
                self.thread.start()
            self.cond.notify()

    def remove(self, follower):
        with self.cond:
            if follower in self.following:
                self.following.remove(follower)

    def _run(self):
        while True:
            with self.cond:
                while not self.following:
                    self.cond.wait()
                todo = list(self.following)
            if not any([f.hash_grown() for f in todo]):
                time.sleep(self.POLL)


class Recorder:
    """The dump's side: hash the images as they are written, then write crpy-digests."""

    def __init__(self, images_dir, algo=None):
        self.images_dir, self.algo = os.fspath(images_dir), algo or default_algo()
        self.done = {}                           # name -> FileDigest
        self._thread, self._error = None, None
        self._worker = _FollowWorker()
        self._looked_at = set()                  # names hash_written found small: left to write()
        self._unfollowed = 0                     # bytes written outside follow() since the last look

    def follow(self, path, fed=False):
        """Hash path while it is being written (see _Follower); .close() once it is complete.
        fed: the writer can compute crc32c digests itself; it does (a _Fed) if crc32c is the hash."""
        if fed and self.algo == "crc32c":
            return _Fed(path, self._followed)
        return _Follower(path, self.algo, self._followed, self._worker)

    def _followed(self, path, result):
        self.done[os.path.basename(path)] = result

    def hash_written(self, unfollowed=None):
        """Hash the big images written so far in a background thread (the hash releases the GIL,
        so it runs beside the rest of the dump on another CPU).  unfollowed: bytes the caller
        wrote since its last call into files it did not follow(); the directory is looked at
        only once they add up to a file worth a thread (a tree of small tasks: never per task)."""
        if unfollowed is not None:
            self._unfollowed += unfollowed
            if self._unfollowed < _BACKGROUND_MIN:
                return
        self._unfollowed = 0
        self._join()
        todo = []
        for name in image_names(self.images_dir):
            if name in self.done or name in self._looked_at:
                continue
            if os.stat(os.path.join(self.images_dir, name)).st_size >= _BACKGROUND_MIN:
                todo.append(name)
            else:
                self._looked_at.add(name)
        if todo:
            self._thread = threading.Thread(target=self._hash_all, args=(todo,), daemon=True,
                                            name="crpy-digests")
            self._thread.start()

    def _hash_all(self, names):
        try:
            for name in names:
                self.done[name] = file_digest(os.path.join(self.images_dir, name), self.algo)
        except BaseException as e:  # noqa: BLE001 - raised again by _join, in the dump's thread
            self._error = e

    def _join(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self):
        """Hash what is left (and what changed since it was hashed); write crpy-digests."""
        self._join()
        entries = []
        for name in image_names(self.images_dir):
            path = os.path.join(self.images_dir, name)
            known = self.done.get(name)
            if known is None or known.stamp != _stamp(os.stat(path)):
                known = self.done[name] = file_digest(path, self.algo)
            entries.append(framing.message_class("crpy_digest_pb2.image_digest_entry")(
                name=name, size=known.size, chunks=known.chunks))
        write_digests_file(self.images_dir, self.algo, CHUNK_SIZE, entries)
        return len(entries)


def write_digests_file(images_dir, algo, chunk_size, entries):
    path = os.path.join(images_dir, FILE_NAME)
    body = b"".join(struct.pack("<I", e.ByteSize()) + e.SerializeToString() for e in entries)
    head = framing.message_class("crpy_digest_pb2.digest_head")(
        algo=algo, chunk_size=chunk_size, body=hash_function(algo)(body), version=VERSION)
    framing.write_image(path, "digests", [head] + list(entries))


def write_digests(images_dir):
    """Hash every image of images_dir now and write crpy-digests (tests, tools that edit images)."""
    return Recorder(images_dir).write()


# --------------------------------------------------------------------------------------- check

def real_path(path, dirs):
    """os.path.realpath(path) with the realpath of its directory looked up once in dirs ({dir:
    its realpath}): a tree's ~900 images, each resolved component by component, cost 20 ms."""
    head, name = os.path.split(path)
    real_dir = dirs.get(head)
    if real_dir is None:
        real_dir = dirs[head] = os.path.realpath(head)
    full = os.path.join(real_dir, name)
    return os.path.realpath(full) if os.path.islink(full) else full


_read = {}                         # path of a crpy-digests -> (its bytes, what they hold)


def read_digests(images_dir):
    """(algo, chunk_size, {name: image_digest_entry}); ImageError if missing or damaged itself.
    Decoded once while the file holds the same bytes (a restore asks three times; the entries
    are not to be changed)."""
    path = os.path.join(os.fspath(images_dir), FILE_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DigestsMissing(path, "no digests of the images: not dumped by crpy, or the file was lost",
                             hint=HINT_MISSING) from None
    except OSError as e:
        raise ImageError(path, f"cannot read the digests file: {os.strerror(e.errno)}",
                         hint="check that it is a file crpy may read") from None
    known = _read.get(path)
    if known is not None and known[0] == data:
        return known[1]
    got = _decode_digests(path, data)
    _read[path] = (data, got)
    return got


def _decode_digests(path, data):
    try:
        head, *entries = framing.read_image(path, "digests", data)
    except ImageError as e:               # its message without the path and offset: they are ours
        raise ImageError(path, f"the digests file itself is damaged: {str(e).split(': ', 1)[-1]}", e.offset,
                         HINT_DAMAGED) from None
    except ValueError:
        raise ImageError(path, "the digests file itself is damaged: it has no head", len(data),
                         HINT_DAMAGED) from None
    body_at = 12 + struct.unpack_from("<I", data, 8)[0]   # header and type magics, head's size, head
    version = head.version if head.HasField("version") else 1
    if version not in _ALGOS:
        raise framing.entry_error(path, f"digests format version {version}: this crpy reads versions up to "
                                  f"{VERSION} (written by a newer crpy, or damaged)", 0,
                                  "check them with the crpy that dumped them, or restore with --skip-integrity")
    if head.algo not in _ALGOS[version]:
        raise framing.entry_error(path, f"the digests file itself is damaged (or from a newer crpy): unknown "
                                  f"digest algorithm {head.algo!r} in format version {version}", 0, HINT_DAMAGED)
    try:
        found = hash_function(head.algo)(memoryview(data)[body_at:])
    except ImageError as e:
        raise ImageError(path, str(e).split(": ", 1)[1], hint=e.hint) from None
    if found != head.body:
        raise ImageError(path, f"the digests file itself is damaged: bytes [{body_at}, {len(data)}) "
                         f"hash to {found:#018x}, expected {head.body:#018x}", body_at, HINT_DAMAGED)
    if head.chunk_size <= 0 or head.chunk_size % mmap.PAGESIZE:
        raise framing.entry_error(path, f"the digests file itself is damaged: chunk size {head.chunk_size}",
                                  0, HINT_DAMAGED)
    return head.algo, head.chunk_size, {e.name: e for e in entries}


def damaged_images(images_dir, names=None, skip_chunks=None):
    """[ImageError], one per image that differs from what the dump wrote ([] when all intact);
    a missing or damaged crpy-digests is the one error then.  names(name): which images to check
    (all by default); skip_chunks: {real path: {chunk}} left to the restored tasks (crc32c only)."""
    check = ImagesCheck(images_dir, names, skip_chunks)
    check.hash()
    return check.errors()


class ImagesCheck:
    """damaged_images in three steps, so that a restore hashes beside its own work without its
    Python competing for the GIL: made in the caller's thread (crpy-digests read, the images
    listed), hash() in any thread (C, the GIL released), errors() in the caller's again (the
    one-line errors, worded only when something differs)."""

    def __init__(self, images_dir, names=None, skip_chunks=None):
        self.images_dir = os.fspath(images_dir)
        self._errors, self._batch, self._each, self._sized, self._differ = {}, [], [], [], []
        try:
            self._algo, self._chunk_size, self._recorded = read_digests(self.images_dir)
        except ImageError as e:
            self._errors[FILE_NAME] = e
            return
        dirs = {}
        for name in sorted(set(self._recorded) | set(image_names(self.images_dir))):
            if names is not None and not names(name):
                continue
            skip = None
            if skip_chunks and self._algo == "crc32c":
                skip = skip_chunks.get(real_path(os.path.join(self.images_dir, name), dirs))
            want = self._recorded.get(name)
            if self._algo == "crc32c" and not skip and want is not None and want.size < _WINDOW:
                self._batch.append(name)
            elif skip and want is not None and len(skip) >= len(want.chunks):
                self._sized.append(name)     # every chunk checked elsewhere: its size here
            else:
                self._each.append((name, skip))

    def hash(self):
        """Hash the images (the slow part; most of it in C with the GIL released)."""
        if FILE_NAME in self._errors:
            return
        for name, skip in self._each:
            self._errors[name] = _check_one(self.images_dir, name, self._recorded.get(name), self._algo,
                                            self._chunk_size, skip)
        self._differ = _differing(self.images_dir, self._batch, self._recorded, self._chunk_size)
        for name in self._sized:
            try:
                same = os.stat(os.path.join(self.images_dir, name)).st_size == self._recorded[name].size
            except OSError:
                same = False
            if not same:                     # (missing, or its size: worded by errors())
                self._differ.append(name)

    def errors(self):
        """[ImageError] of the images hash() found different, by name."""
        for name in self._differ:          # (what differs, in words)
            self._errors[name] = _check_one(self.images_dir, name, self._recorded[name], self._algo,
                                            self._chunk_size)
        self._differ = []
        return [self._errors[name] for name in sorted(self._errors) if self._errors[name] is not None]


def _differing(images_dir, names, recorded, chunk_size):
    """Those of the small images `names` that are not as recorded (crc32c): all hashed in one
    call into C, not one each (a tree's images are mostly small, ~7 a task)."""
    from crpy.kernel.crc32c import files_chunks

    if not names:
        return []
    dirfd = os.open(images_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        found = files_chunks(dirfd, [(name, recorded[name].size) for name in names], chunk_size)
    finally:
        os.close(dirfd)
    return [name for name, (_, chunks) in zip(names, found) if chunks != list(recorded[name].chunks)]


def _check_one(images_dir, name, want, algo, chunk_size, skip=None):
    path = os.path.join(images_dir, name)
    if want is None:
        return ImageError(path, "this image is not in the dump's digests: added after the dump?",
                          hint=HINT_DAMAGED)
    try:
        if skip:
            have = _digest_except(path, algo, chunk_size, skip)
        else:
            have = file_digest(path, algo, chunk_size, threads=_CHECK_THREADS)
    except FileNotFoundError:
        return ImageError(path, f"image is missing (the dump wrote {want.size} bytes)", hint=HINT_DAMAGED)
    except OSError as e:
        return ImageError(path, f"cannot read image: {os.strerror(e.errno)}", hint="check its permissions")
    if have.size != want.size:
        lo, hi = sorted((have.size, want.size))
        what = "missing (truncated)" if have.size < want.size else "added after its end"
        return ImageError(path, f"holds {have.size} bytes, the dump wrote {want.size}: bytes "
                          f"[{lo:#x}, {hi:#x}) {what}", lo, HINT_DAMAGED)
    bad = [i for i, (a, b) in enumerate(zip(have.chunks, want.chunks)) if a is not None and a != b]
    if len(have.chunks) != len(want.chunks):
        bad = bad or [min(len(have.chunks), len(want.chunks))]
    if not bad:
        return None
    i = bad[0]
    found = have.chunks[i] if i < len(have.chunks) else 0
    expected = want.chunks[i] if i < len(want.chunks) else 0
    return chunk_error(path, i, chunk_size, want.size, algo, found, expected, len(bad) - 1)


def chunk_error(path, i, chunk_size, size, algo, found, expected, more=0):
    """The one-line error of chunk i of an image (size bytes long) that hashes to found."""
    lo, hi = i * chunk_size, min((i + 1) * chunk_size, size)
    tail = f" (and {more} more chunks)" if more else ""
    return ImageError(path, f"bytes [{lo:#x}, {hi:#x}) differ from the dump: {algo} {found:#018x}, "
                      f"expected {expected:#018x}{tail}", lo, HINT_DAMAGED)


def _digest_except(path, algo, chunk_size, skip):
    """FileDigest of path with None for the chunks in skip (a restored task checks those as it
    reads them: crpy.restore.pagecheck); the others hashed in C, a run of chunks at a time."""
    from crpy.kernel.crc32c import file_chunks

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        count = -(-st.st_size // chunk_size)
        chunks, i = [None] * count, 0
        while i < count:
            if i in skip:
                i += 1
                continue
            j = i
            while j < count and j not in skip:
                j += 1
            chunks[i:j] = file_chunks(fd, i * chunk_size, min(j * chunk_size, st.st_size), chunk_size)
            i = j
        return FileDigest(st.st_size, chunks, _stamp(st))
    finally:
        os.close(fd)
