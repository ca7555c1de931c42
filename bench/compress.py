"""`crpy dump --compress` against a plain dump: image size and time, and the codec measurement the
choice of lz4 rests on (crpy/images/pagecodec.py).

The target (bench/mixed.c) holds MiB of touched memory of a realistic mix: a quarter each of
pseudo-random bytes, text (Python's own sources), zeros it wrote, and heap-like records.  Each
round dumps it with and without --compress (alternating which goes first), images on /dev/shm,
and restores each; medians and minima of the rounds.  The codec table compresses a copy of the
same mix (built here in Python) in 1 MiB blocks with each candidate, one thread, best of 3.
`python3 -m bench.compress [reps]`."""

import glob
import os
import statistics
import sys
import time

from bench import common

MIB = 1 << 20
TARGET_MIB = 1024
SAMPLE_MIB = 128
PIECE = 64 << 10


def _text(limit=MIB):
    """About a MiB of Python's own sources (text the target and the sample both use)."""
    out = bytearray()
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        with open(path, "rb") as f:
            out += f.read()
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _sample(mib):
    """The target's mix, built here: random, text, zeros and heap-like records in 64 KiB turns."""
    import random
    import struct

    text, rnd, out = _text(), random.Random(1), bytearray()
    rec = struct.Struct("<QQIIdQ")
    for n in range(mib * MIB // PIECE):
        kind = n % 4
        if kind == 0:
            out += rnd.randbytes(PIECE)
        elif kind == 1:
            at = (n * 4099) % (len(text) - PIECE)
            out += text[at:at + PIECE]
        elif kind == 2:
            out += bytes(PIECE)
        else:
            base, count = 0x7F0000000000 + n * PIECE, PIECE // rec.size
            out += b"".join(rec.pack(base + ((i + 1) % count) * rec.size, base + ((i - 1) % count) * rec.size,
                                     1 + i % 3, n % 7, i * 0.5, i * 0x9E3779B97F4A7C15 >> 40 & (1 << 64) - 1)
                            for i in range(count))
            out += bytes(PIECE - count * rec.size)
    return bytes(out)


def _codecs():
    import lz4.block

    out = [("lz4 block", lambda b: lz4.block.compress(b, store_size=False),
            lambda c, n: lz4.block.decompress(c, uncompressed_size=n))]
    try:
        import zstandard
    except ImportError:
        return out + [("zstd", None, None)]
    for level in (-1, 1, 3):
        comp, dec = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
        out.append((f"zstd level {level}", comp.compress, lambda c, n, d=dec: d.decompress(c, max_output_size=n)))
    return out


def codec_lines(mib=SAMPLE_MIB, reps=3):
    data = memoryview(_sample(mib))
    lines = [f"compress: codecs over {mib} MiB of the mix in 1 MiB blocks, one thread, best of {reps}"]
    for name, comp, dec in _codecs():
        if comp is None:
            lines.append(f"  {name:14s} not installed (pip install zstandard to compare)")
            continue
        tc = td = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            packed = [comp(data[o:o + MIB]) for o in range(0, len(data), MIB)]
            tc = min(tc, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for c in packed:
                dec(c, MIB)
            td = min(td, time.perf_counter() - t0)
        ratio = sum(map(len, packed)) / len(data)
        gib = len(data) / (1 << 30)
        lines.append(f"  {name:14s} ratio {ratio:.3f}  compress {gib / tc:5.2f} GiB/s  decompress {gib / td:5.2f} GiB/s")
    return lines


def _pages_bytes(images):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(images, "pages-*.img")))


def _round(exe, textfile, workdir, mib, n):
    """{compressed?: (dump s, restore s, pages bytes)} of one back-to-back pair."""
    out = {}
    for packed in ((False, True) if n % 2 == 0 else (True, False)):
        pidfile = os.path.join(workdir, "mixed.pid")
        proc = common.start_target([exe, str(mib), textfile, pidfile], pidfile, "bench.compress: the target",
                                   timeout=120, new_session=False)
        with common.killed_after([proc.pid]), common.image_dir("crpy-bench-compress-") as imgs:
            dump = common.crpy_seconds("bench.compress", "dump", "-t", str(proc.pid), "-D", imgs,
                                       *(["--compress"] if packed else []))
            size = _pages_bytes(imgs)
            proc.wait()
            common.wait_gone([proc.pid])
            restore = common.crpy_seconds("bench.compress", "restore", "-d", "-D", imgs)
            out[packed] = (dump, restore, size)
    return out


def run(reps, mib=TARGET_MIB):
    reps = max(1, min(reps, 3))
    with common.child_subreaper(), common.work_dir("crpy-bench-compress-") as workdir:
        with open(os.path.join(common.ROOT, "bench", "mixed.c")) as f:
            exe = common.build_c(workdir, "mixed", f.read(), "-O2")
        textfile = os.path.join(workdir, "text")
        with open(textfile, "wb") as f:
            f.write(_text())
        rows = [_round(exe, textfile, workdir, mib, n) for n in range(reps)]
    lines = [f"compress: dump and restore of {mib} MiB of the mix (random, text, zeros, records), "
             f"images on /dev/shm, {reps} rounds"]
    for packed, label in ((False, "plain"), (True, "--compress")):
        dump = [r[packed][0] for r in rows]
        restore = [r[packed][1] for r in rows]
        size = statistics.median(r[packed][2] for r in rows)
        lines.append(f"  {label:11s} pages {size / MIB:7.1f} MiB ({size / (mib * MIB):.3f})  "
                     f"dump {statistics.median(dump):6.2f} s (min {min(dump):.2f})  "
                     f"restore {statistics.median(restore):6.2f} s (min {min(restore):.2f})")
    return lines + codec_lines()


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else TARGET_MIB
    for line in run(reps, mib):
        print(line)
