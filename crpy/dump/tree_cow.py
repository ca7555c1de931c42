"""Private pages a child still shares copy-on-write with its parent (fork left them alone):
the same physical page (PFN, from /proc/PID/pagemap, which root reads with PFNs) at the same
address, in an anonymous private VMA the parent has with the same bounds.  Those pages are
not written again into the child's pages image: the child's pagemap lists them with
PE_PARENT (no data), and the restore makes the child inherit them from its restored parent by
fork, so they stay shared in memory too (crpy.restore.premap, area.cow_src)."""

import os
import struct

from crpy.dump import vmas as V
from crpy.log import log

PAGE = 4096
PE_PARENT = 1 << 0
_PFN_MASK, _PRESENT = (1 << 55) - 1, 1 << 63


def inheritable(plan):
    """A VMA whose pages a child may take from its parent (plain anonymous private memory, not
    hugetlb: the child gets its own copy of those)."""
    return (plan.pages == V.PAGES_PRIVATE and plan.status & V.VMA_ANON_PRIVATE and not plan.pkey
            and not plan.flags & V.MAP_HUGETLB)


def split_cow_runs(pid, ppid, plans, parent_plans, page_plan):
    """Move the pages of page_plan.runs that pid shares with ppid into page_plan.parent_runs."""
    same = {(p.start, p.end) for p in parent_plans if inheritable(p)}
    mine = sorted((p.start, p.end) for p in plans if inheritable(p) and (p.start, p.end) in same)
    page_plan.parent_runs = []
    if not mine:
        return
    own, shared = [], 0
    child_fd, parent_fd = _open_pagemap(pid), _open_pagemap(ppid)
    try:
        for run in page_plan.runs:
            s, e = run[0], run[1]
            if not _inside(mine, s, e):
                own.append(run)
                continue
            for lo, hi, is_shared in _segments(child_fd, parent_fd, s, e):
                if is_shared:
                    page_plan.parent_runs.append((lo, hi, PE_PARENT, run[3]))
                    shared += hi - lo
                else:
                    own.append((lo, hi) + tuple(run[2:]))
    finally:
        os.close(child_fd)
        os.close(parent_fd)
    page_plan.runs = own
    log.info("pid %d shares %d pages with its parent %d: not dumped again", pid, shared // PAGE, ppid)


def _open_pagemap(pid):
    return os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)


def _inside(ranges, s, e):
    return any(a <= s and e <= b for a, b in ranges)


def _segments(child_fd, parent_fd, s, e):
    """[(lo, hi, shared)] covering [s, e), split where sharing changes."""
    n = (e - s) // PAGE
    mine = struct.unpack(f"<{n}Q", os.pread(child_fd, n * 8, s // PAGE * 8))
    theirs = struct.unpack(f"<{n}Q", os.pread(parent_fd, n * 8, s // PAGE * 8))
    out = []
    for i in range(n):
        a, b = mine[i], theirs[i]
        flag = bool(a & _PRESENT and b & _PRESENT and a & _PFN_MASK and a & _PFN_MASK == b & _PFN_MASK)
        lo = s + i * PAGE
        if out and out[-1][2] == flag and out[-1][1] == lo:
            out[-1] = (out[-1][0], lo + PAGE, flag)
        else:
            out.append((lo, lo + PAGE, flag))
    return out
