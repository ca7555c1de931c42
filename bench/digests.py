"""How fast each candidate hash of crpy-digests runs over 1 GiB of page cache: the measurement the
choice of xxh3_64 rests on (crpy/images/digest.py).  A 1 GiB file of random data on /dev/shm is
mapped read-only (MAP_POPULATE) and hashed 1 MiB at a time through a memoryview, as the dump and
the restore check do; the mapping itself is timed apart.  Best of reps, in GiB/s.  crc32c is
crpy's own C (crpy.kernel.crc32c: SSE4.2 crc32, AVX-512 VPCLMULQDQ folding where present), the
one the parasite computes as it splices the pages; "crc32c file" is the restore's check of the
same file through a cache-sized buffer (the page cache copy included, no mapping).
`python3 -m bench.digests [reps]`."""

import hashlib
import mmap
import os
import time
import zlib

from bench import common

GIB = 1 << 30
CHUNK = 1 << 20


def _candidates():
    from crpy.kernel.crc32c import crc32c

    out = [("crc32c", crc32c), ("zlib.crc32", zlib.crc32), ("zlib.adler32", zlib.adler32),
           ("blake2b-128", lambda b: hashlib.blake2b(b, digest_size=16).digest()),
           ("sha1", lambda b: hashlib.sha1(b).digest()), ("sha256", lambda b: hashlib.sha256(b).digest())]
    try:
        import xxhash
    except ImportError:
        return out + [("xxh3_64", None)]
    return out + [("xxh3_64", xxhash.xxh3_64_intdigest), ("xxh3_128", xxhash.xxh3_128_intdigest)]


def _mapped(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, GIB, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ)
    finally:
        os.close(fd)


def _hash_seconds(path, fn):
    with _mapped(path) as m:
        view = memoryview(m)
        t0 = time.perf_counter()
        for off in range(0, GIB, CHUNK):
            fn(view[off:off + CHUNK])
        dt = time.perf_counter() - t0
        view.release()
    return dt


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(reps):
    with common.image_dir("crpy-bench-digests-") as d:
        path = os.path.join(d, "data")
        with open(path, "wb") as f:
            for _ in range(GIB // (64 << 20)):
                f.write(os.urandom(64 << 20))
        lines = ["digests: hashes over 1 GiB of page cache (/dev/shm), mapped, 1 MiB per call"]
        maps = []
        for _ in range(reps):
            t0 = time.perf_counter()
            _mapped(path).close()
            maps.append(time.perf_counter() - t0)
        lines.append(f"  {'mmap+populate':14s} {min(maps) * 1e3:7.1f} ms per GiB")
        fd = os.open(path, os.O_RDONLY)
        try:
            from crpy.kernel.crc32c import file_chunks

            best = min(_timed(lambda: file_chunks(fd, 0, GIB, CHUNK)) for _ in range(reps))
        finally:
            os.close(fd)
        lines.append(f"  {'crc32c file':14s} {1 / best:7.2f} GiB/s ({best * 1e3:.0f} ms per GiB, read included)")
        for name, fn in _candidates():
            if fn is None:
                lines.append(f"  {name:14s} not installed (pip install xxhash)")
                continue
            best = min(_hash_seconds(path, fn) for _ in range(reps))
            lines.append(f"  {name:14s} {1 / best:7.2f} GiB/s ({best * 1e3:.0f} ms per GiB)")
    return lines


if __name__ == "__main__":
    common.run_alone(run)
