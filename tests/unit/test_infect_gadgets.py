"""crpy.dump.infect_gadgets: the chunked search of code finds exactly what reading the whole
mapping at once finds (patterns across chunk boundaries too), and stops early only when told."""

import os

import pytest

from crpy.dump import infect_gadgets, infect_mem

PATTERNS = {**infect_gadgets._POPS, **{("R", i): p for i, p in enumerate(infect_gadgets._R)},
            "ret3": b"\xc3\xc3\xc3", "endbr": b"\xf3\x0f\x1e\xfa"}


def _libc_code(pid):
    code = [m for m in infect_mem.mappings(pid) if m.perms.startswith("r-x") and "libc" in (m.path or "")]
    if not code:
        pytest.skip("this Python has no libc code mapping (static build?)")
    return code[0]


def _whole(pid, m):
    code = infect_mem.read(pid, m.start, m.end - m.start)
    return {name: m.start + code.find(p) for name, p in PATTERNS.items() if p in code}


@pytest.mark.parametrize("chunk", [4099, 128 << 10])
def test_chunked_search_equals_one_read(monkeypatch, chunk):
    pid = os.getpid()
    m = _libc_code(pid)
    monkeypatch.setattr(infect_gadgets, "_SCAN_CHUNK", chunk)   # 4099: many odd boundaries
    got = infect_gadgets._search(pid, m, PATTERNS, lambda hits: False)
    assert got == _whole(pid, m)
    assert list(got) == [name for name in PATTERNS if name in got]     # pattern order kept


def test_search_stops_when_enough(monkeypatch):
    pid = os.getpid()
    m = _libc_code(pid)
    monkeypatch.setattr(infect_gadgets, "_SCAN_CHUNK", 4096)
    reads = []
    real_read = infect_mem.read
    monkeypatch.setattr(infect_mem, "read", lambda *a: reads.append(a) or real_read(*a))
    got = infect_gadgets._search(pid, m, PATTERNS, lambda hits: "rdi" in hits)
    read = sum(a[2] for a in reads)
    assert read < m.end - m.start                                 # not the whole mapping
    assert "rdi" in got and got["rdi"] == _whole(pid, m)["rdi"]
