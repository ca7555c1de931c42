"""Where things go in the restored child's address space (pure arithmetic, unit-testable).

The child holds two layouts at once: its own (Python's) and the task's.  Everything crpy needs
until the last instruction sits in one "restorer region" placed in a hole free in both: the blob,
its argument block, scratch room for the vDSO and one slot per VMA, where the memory is premapped
and filled before the blob mremaps it to its final address.  Slots keep the target's offset modulo
2 MiB, so mremap can move whole page tables, and are separated by unmapped (PROT_NONE) pages so
that neighbouring slots never merge.  A hugetlb slot keeps the target's offset modulo its huge
page size (mremap moves hugetlb memory only in whole, aligned huge pages).
"""

from crpy.record import dataclass

PAGE = 4096
HUGE = 2 << 20
TASK_SIZE = 0x7FFFFFFFF000
REGION_FLOOR = 1 << 32        # keep clear of low mappings (non-PIE executables, brk)
MARGIN = HUGE                 # distance to any other mapping (stack guard gaps)
SPECIAL_NAMES = ("[vvar]", "[vvar_vclock]", "[vdso]")


def page_up(n):
    return (n + PAGE - 1) & ~(PAGE - 1)


@dataclass
class Slot:
    area: object       # load.Area
    addr: int          # premap address in the region


@dataclass
class RegionPlan:
    start: int
    length: int
    blob: int          # blob image address
    args: int          # struct rst_args address
    scratch: int       # vDSO hop room
    slots: list        # Slot per movable area


def plan_region(areas, blob_size, args_size, scratch_size, taken, spans=()):
    """Lay the region out and put it in the lowest hole (above 4 GiB) free of every range in
    `taken` [(start, end)]: the task's VMAs and the current process's mappings (or some of them
    in `spans`, as widened_spans made them: a process planning many tasks makes its own once)."""
    off = page_up(blob_size) + PAGE
    args_off = off
    off += page_up(args_size) + PAGE
    scratch_off = off
    off += page_up(scratch_size) + PAGE
    rel_slots = []
    align = max([HUGE] + [a.page_align for a in areas])
    for a in areas:
        off = _align_like(off, a.start, max(HUGE, a.page_align))
        rel_slots.append((a, off))
        off += a.length + PAGE
    length = (off + HUGE - 1) & ~(HUGE - 1)
    start = find_hole(length, taken, align=align, spans=spans)
    return RegionPlan(start, length, start, start + args_off, start + scratch_off,
                      [Slot(a, start + o) for a, o in rel_slots])


def _align_like(off, target, align=HUGE):
    """The smallest offset >= off congruent to target modulo align (2 MiB, or a bigger huge page
    size: the region is aligned to the largest)."""
    want = target % align
    return off + (want - off) % align


def widened_spans(taken):
    """Ranges [(start, end)] as find_hole compares them: widened by MARGIN, sorted."""
    return sorted((max(s - MARGIN, 0), e + MARGIN) for s, e in taken)


def find_hole(length, taken, floor=REGION_FLOOR, ceiling=TASK_SIZE, align=HUGE, spans=()):
    """Lowest `align` (2 MiB) aligned start >= floor with [start - MARGIN, start + length + MARGIN)
    free of `taken` and of `spans` (widened_spans)."""
    spans = sorted(list(spans) + widened_spans(taken)) if spans else widened_spans(taken)
    start = (floor + align - 1) & ~(align - 1)
    for s, e in spans:
        if e <= start:
            continue
        if s >= start + length:
            break
        start = (e + align - 1) & ~(align - 1)
    if start + length > ceiling:
        raise ValueError(f"no hole of {length:#x} bytes free in both address spaces")
    return start


def match_specials(current, target):
    """Pair the current [vvar] [vvar_vclock] [vdso] with the task's vvar/vdso areas.

    current: [(name, start, end)] from /proc/self/maps; target: [(kind, start, end)] with kind
    "vvar" or "vdso" (a dump may store [vvar][vvar_vclock] as one vvar area, as CRIU 4.2 does).
    Both blocks must be contiguous, equally long, with the vDSO at the same offset; returns
    [(cur, target, length)] per current mapping, or raises ValueError saying what differs."""
    if not target:
        raise ValueError("the image has no vDSO")
    cur = sorted((s, e, n) for n, s, e in current)
    tgt = sorted((s, e, k) for k, s, e in target)
    for blk, what in ((cur, "this kernel's"), (tgt, "the image's")):
        for (s0, e0, _), (s1, _, _) in zip(blk, blk[1:]):
            if e0 != s1:
                raise ValueError(f"{what} vvar/vdso mappings are not contiguous")
    cur_len = cur[-1][1] - cur[0][0]
    tgt_len = tgt[-1][1] - tgt[0][0]
    cur_vdso = [s - cur[0][0] for s, _, n in cur if n == "[vdso]"]
    tgt_vdso = [s - tgt[0][0] for s, _, k in tgt if k == "vdso"]
    if cur_len != tgt_len or cur_vdso != tgt_vdso:
        raise ValueError(f"vDSO layout differs: image {tgt_len:#x} bytes (vdso at {tgt_vdso}), "
                         f"this kernel {cur_len:#x} (vdso at {cur_vdso})")
    base = tgt[0][0] - cur[0][0]
    return [(s, s + base, e - s) for s, e, _ in cur]


def needs_hop(pairs):
    """True when the current and target vDSO blocks overlap (and differ): move via scratch."""
    cur_s, cur_e = pairs[0][0], pairs[-1][0] + pairs[-1][2]
    tgt_s, tgt_e = pairs[0][1], pairs[-1][1] + pairs[-1][2]
    return cur_s != tgt_s and cur_s < tgt_e and tgt_s < cur_e


def unmap_list(keep):
    """[(start, length)] covering [0, TASK_SIZE) minus the `keep` ranges [(start, end)]."""
    out, pos = [], 0
    for s, e in sorted(keep):
        if s > pos:
            out.append((pos, s - pos))
        pos = max(pos, e)
    if pos < TASK_SIZE:
        out.append((pos, TASK_SIZE - pos))
    return out
