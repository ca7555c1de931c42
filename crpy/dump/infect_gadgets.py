"""The two code gadgets the infection needs, found in the task's own executable memory.

G: `syscall` followed only by register xors and `ret`, in the [vdso] (its fallback syscalls).
   Any syscall issued from G returns through `ret`, i.e. into whatever rsp points at: the
   emergency frame's pretcode.  A bare `syscall` would run on into the vdso function.
R: an rt_sigreturn restorer (`mov $15,%rax; syscall`, glibc's __restore_rt, or musl/Go's
   `mov $15,%eax; syscall`), which any program that ever installed a handler has.
pop rax/rdi/rsi; ret (optional, found in libc): they let the emergency path unmap the freshly
   injected mapping by itself (infect.py's unmap chain), so a dumper dying during the injection
   leaks nothing.
"""

import re

from crpy.dump import infect_mem
from crpy.errors import ParasiteError

_G = re.compile(br"\x0f\x05(?:[\x31\x33][\xc0-\xff]|[\x40-\x4f][\x31\x33][\xc0-\xff])*\xc3")
_R = (b"\x48\xc7\xc0\x0f\x00\x00\x00\x0f\x05", b"\xb8\x0f\x00\x00\x00\x0f\x05")
_SCAN_LIMIT = 64 << 20  # never read more than this much code looking for R
_SCAN_CHUNK = 128 << 10  # code read per process_vm_readv while looking


def find_syscall_ret(pid, maps):
    vdso = [m for m in maps if m.path == "[vdso]"]
    if not vdso:
        raise ParasiteError(f"pid {pid}: has no [vdso]", "crpy needs the vDSO's syscall gadget")
    m = vdso[0]
    # every task has this kernel's one vDSO: the gadget found in the last one is checked in
    # place (a few bytes read) before the whole vDSO is read and searched again
    known = _vdso_gadget.get(m.end - m.start)
    if known is not None and infect_mem.read(pid, m.start + known[0], len(known[1])) == known[1]:
        return m.start + known[0]
    hit = _G.search(infect_mem.read(pid, m.start, m.end - m.start))
    if not hit:
        raise ParasiteError(f"pid {pid}: no `syscall; ...; ret` gadget in the vDSO")
    _vdso_gadget[m.end - m.start] = (hit.start(), hit.group())
    return m.start + hit.start()


_vdso_gadget = {}  # vDSO size -> (offset of G, its bytes)


def _code_mappings(maps):
    code = [m for m in maps if m.perms.startswith("r-x") and m.path and not m.path.startswith("[")]
    # libc first: that is where __restore_rt lives in nearly every program.
    return sorted(code, key=lambda m: 0 if "libc" in m.path else 1)


_POPS = {"rax": b"\x58\xc3", "rdi": b"\x5f\xc3", "rsi": b"\x5e\xc3"}


_seen = {}  # (path, size) -> {name: offset}: one scan per library, checked on every reuse


def _cached(pid, m, patterns):
    known = _seen.get((m.path, m.end - m.start))
    if not known:
        return None
    for name, off in known.items():
        p = patterns[name]
        if infect_mem.read(pid, m.start + off, len(p)) != p:
            return None
    return {name: m.start + off for name, off in known.items()}


def _scan(pid, maps, patterns, enough):
    """{name: address} of the first hit of each pattern in the task's code (libc first), until
    enough(found) says no further mapping could change what the caller uses."""
    found, scanned = {}, 0
    for m in _code_mappings(maps):
        size = m.end - m.start
        if scanned + size > _SCAN_LIMIT:
            break
        scanned += size
        hits = _cached(pid, m, patterns)
        if hits is None:
            hits = _search(pid, m, patterns, enough)
            _seen[(m.path, size)] = {name: a - m.start for name, a in hits.items()}
        for name, addr in hits.items():
            found.setdefault(name, addr)
        if len(found) == len(patterns) or enough(found):
            break
    return found


def _search(pid, m, patterns, enough):
    """{name: address} of the first hit of each pattern in mapping m, in pattern order, read in
    _SCAN_CHUNK pieces (overlapping by a pattern's length) until every pattern is found or
    enough(hits) holds: glibc has all it needs in its first 100 KiB of 1.4 MiB of code."""
    overlap = max(len(p) for p in patterns.values()) - 1
    hits, pos = {}, m.start
    while pos < m.end and len(hits) < len(patterns):
        base = max(pos - overlap, m.start)
        code = infect_mem.read(pid, base, min(_SCAN_CHUNK, m.end - pos) + pos - base)
        for name, p in patterns.items():
            if name not in hits and (i := code.find(p)) >= 0:
                hits[name] = base + i
        pos += _SCAN_CHUNK
        if enough(hits):
            break
    return {name: hits[name] for name in patterns if name in hits}


def find_code_gadgets(pid, maps):
    """-> (R, pops): the rt_sigreturn restorer, and {'rax','rdi','rsi': `pop REG; ret`} or
    None when one of those is missing."""
    patterns = dict(_POPS)
    patterns.update({("R", i): p for i, p in enumerate(_R)})
    # what is used below: every pop, and the first R in pattern order of the first mapping
    # that has one; the first R pattern found settles that mapping, any R settles later ones
    found = _scan(pid, maps, patterns,
                  lambda hits: all(k in hits for k in _POPS) and ("R", 0) in hits)
    restorers = [a for k, a in found.items() if isinstance(k, tuple)]
    if not restorers:
        raise ParasiteError(f"pid {pid}: no rt_sigreturn restorer in its code",
                            "static programs that never installed a signal handler are not supported yet")
    pops = {k: found[k] for k in _POPS if k in found}
    return restorers[0], (pops if len(pops) == len(_POPS) else None)
