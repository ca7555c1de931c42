"""A Python program on many modules and C extensions, each holding state across the dump:
sqlite3 (an in-memory db, and a cursor half read), hashlib and zlib objects mid-stream, decimal
with its context, ssl (a client handshake waiting in a memory BIO), ctypes (libc and a callback
through qsort), random, re, json, array, mmap, struct.  The loop uses them all; the check
recomputes everything from scratch and compares."""

import array
import ctypes
import decimal
import hashlib
import json
import mmap
import random
import re
import sqlite3
import ssl
import struct
import zlib

from common import Target

t = Target()
SLOTS = 1 << 16


def chunk(k):
    return (f"{k}:" * 8).encode()


db = sqlite3.connect(":memory:")
db.execute("create table t (i integer primary key, h text)")
db.execute("create table fixed (n integer)")
db.executemany("insert into fixed values (?)", [(n,) for n in range(1000)])
cursor = db.execute("select n from fixed order by n")
first = [r[0] for r in cursor.fetchmany(10)]

sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=32)
packer = zlib.compressobj(6)
packed = []
decimal.getcontext().prec = 60
dsum = decimal.Decimal(0)
root2 = decimal.Decimal(2).sqrt()

tls_ctx = ssl.create_default_context()
tls_out = ssl.MemoryBIO()
tls = tls_ctx.wrap_bio(ssl.MemoryBIO(), tls_out, server_hostname="example.org")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass                                   # the ClientHello waits in tls_out

libc = ctypes.CDLL("libc.so.6")
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
by_value = CMP(lambda a, b: a[0] - b[0])
ints = (ctypes.c_int * 64)()

rng = random.Random(1234)
bits = 0
pattern = re.compile(rb"(\d+):")
halves = array.array("d")
ring = mmap.mmap(-1, SLOTS * 4)
last_json = ""

i = 0
t.ready()
while not t.term:
    for _ in range(100):
        data = chunk(i)
        db.execute("insert into t values (?, ?)", (i, hashlib.md5(data).hexdigest()))
        sha.update(data)
        blake.update(data)
        packed.append(packer.compress(data))
        dsum += decimal.Decimal(i) * decimal.Decimal("0.001")
        bits ^= rng.getrandbits(32)
        if int(pattern.match(data).group(1)) != i:
            raise SystemExit("re lost its way")
        halves.append(i * 0.5)
        ring[(i % SLOTS) * 4:(i % SLOTS) * 4 + 4] = struct.pack("<I", i)
        last_json = json.dumps({"i": i, "tail": list(halves[-3:])})
        i += 1
    for k in range(64):
        ints[k] = (k * 37 + i) % 101
    libc.qsort(ints, 64, 4, by_value)
    t.progress(i)
    libc.usleep(1000)


def check():
    global bits
    problems = []
    if t.breaking:
        sha.update(b"x")
    full = b"".join(chunk(k) for k in range(i))
    if sha.hexdigest() != hashlib.sha256(full).hexdigest():
        problems.append("sha256 state")
    if blake.hexdigest() != hashlib.blake2b(full, digest_size=32).hexdigest():
        problems.append("blake2b state")
    if zlib.decompress(b"".join(packed) + packer.flush()) != full:
        problems.append("zlib stream")
    n, total = db.execute("select count(*), sum(i) from t").fetchone()
    if n != i or total != i * (i - 1) // 2:
        problems.append(f"sqlite: {n} rows summing to {total}, want {i}")
    for k in range(0, i, max(i // 50, 1)):
        if db.execute("select h from t where i = ?", (k,)).fetchone()[0] != hashlib.md5(chunk(k)).hexdigest():
            problems.append(f"sqlite row {k}")
            break
    if first + [r[0] for r in cursor.fetchall()] != list(range(1000)):
        problems.append("the half-read sqlite cursor")
    if decimal.getcontext().prec != 60 or dsum != decimal.Decimal(i * (i - 1) // 2) / 1000:
        problems.append(f"decimal: prec {decimal.getcontext().prec}, sum {dsum}")
    if root2 != decimal.Decimal(2).sqrt() or len(str(root2)) != 61:
        problems.append("decimal sqrt(2)")
    hello = tls_out.read()
    if len(hello) < 100 or hello[:2] != b"\x16\x03":
        problems.append(f"the TLS ClientHello waiting in the BIO: {hello[:8]!r}")
    if len(ssl.RAND_bytes(32)) != 32 or ssl.create_default_context().verify_mode != ssl.CERT_REQUIRED:
        problems.append("ssl after restore")
    import os

    if libc.getpid() != os.getpid():
        problems.append("ctypes: libc getpid")
    for k in range(64):
        ints[k] = (k * 53) % 64
    libc.qsort(ints, 64, 4, by_value)
    if list(ints) != list(range(64)):
        problems.append("ctypes: qsort through a Python callback")
    again, want = random.Random(1234), 0
    for _ in range(i):
        want ^= again.getrandbits(32)
    if bits != want or rng.getrandbits(32) != again.getrandbits(32):
        problems.append("random state")
    if len(halves) != i or sum(halves) != 0.5 * (i * (i - 1) // 2):
        problems.append("array")
    for slot in range(0, min(i, SLOTS), 97):
        v = struct.unpack("<I", ring[slot * 4:slot * 4 + 4])[0]
        if v % SLOTS != slot or not i - SLOTS <= v < i:
            problems.append(f"mmap slot {slot}: {v}")
            break
    if json.loads(last_json)["i"] != i - 1:
        problems.append("json")
    return problems


t.finish(check)
