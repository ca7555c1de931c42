"""Unit tests of the restorer's address-space arithmetic (crpy.restore.layout) and of the code
gadgets it borrows (crpy.restore.gadgets), plus one check on the real vDSO of this machine."""

import ctypes

import pytest

from crpy.restore import gadgets, layout
from crpy.restore.load import Area

MB = 1 << 20


def area(start, length, kind="anon"):
    return Area(start, start + length, 0, 3, 0x22, 0x201, 0, kind)


def test_find_hole_skips_taken_ranges_with_margin():
    taken = [(0x1_0000_0000, 0x1_0010_0000), (0x1_0100_0000, 0x1_0200_0000)]
    start = layout.find_hole(4 * MB, taken)
    assert start % (2 * MB) == 0
    for s, e in taken:
        assert start + 4 * MB + layout.MARGIN <= s or start >= e + layout.MARGIN


def test_find_hole_fails_when_full():
    with pytest.raises(ValueError):
        layout.find_hole(4 * MB, [(0, layout.TASK_SIZE)])


def test_plan_region_slots_keep_2mb_offsets_and_gaps():
    areas = [area(0x7f00_0012_3000, 5 * MB), area(0x7f00_0100_0000, 4096), area(0x55_0000_0000, 3 * 4096)]
    plan = layout.plan_region(areas, 70000, 120000, 8 * 4096, taken=[(a.start, a.end) for a in areas])
    assert plan.start % (2 * MB) == 0 and plan.length % (2 * MB) == 0
    assert plan.blob == plan.start < plan.args < plan.scratch
    prev_end = plan.scratch + 8 * 4096
    for slot in plan.slots:
        assert slot.addr % (2 * MB) == slot.area.start % (2 * MB)
        assert slot.addr >= prev_end + 4096                 # one unmapped page between slots
        prev_end = slot.addr + slot.area.length
    assert prev_end <= plan.start + plan.length
    for a in areas:
        assert a.end <= plan.start or a.start >= plan.start + plan.length


def test_plan_region_keeps_huge_page_offsets():
    """A hugetlb slot keeps the target's offset modulo its huge page size (1 GiB here)."""
    big = Area(0x7f00_4000_0000, 0x7f00_8000_0000, 0, 3, 0x22 | 0x40000 | (30 << 26), 0x201, 0, "anon")
    areas = [area(0x7f00_0012_3000, 5 * MB), big]
    plan = layout.plan_region(areas, 70000, 120000, 8 * 4096, taken=[(a.start, a.end) for a in areas])
    slot = next(s for s in plan.slots if s.area is big)
    assert slot.addr % (1 << 30) == 0 and plan.start % (1 << 30) == 0


def test_unmap_list_is_the_complement():
    keep = [(0x2000, 0x5000), (0x10000, 0x11000)]
    assert layout.unmap_list(keep) == [(0, 0x2000), (0x5000, 0xb000), (0x11000, layout.TASK_SIZE - 0x11000)]


CUR = [("[vvar]", 0x7000_0000, 0x7000_4000), ("[vvar_vclock]", 0x7000_4000, 0x7000_6000),
       ("[vdso]", 0x7000_6000, 0x7000_8000)]


def test_match_specials_merged_vvar():
    target = [("vvar", 0x6000_0000, 0x6000_6000), ("vdso", 0x6000_6000, 0x6000_8000)]
    pairs = layout.match_specials(CUR, target)
    assert pairs == [(0x7000_0000, 0x6000_0000, 0x4000), (0x7000_4000, 0x6000_4000, 0x2000),
                     (0x7000_6000, 0x6000_6000, 0x2000)]
    assert not layout.needs_hop(pairs)


def test_match_specials_overlap_needs_hop():
    target = [("vvar", 0x7000_2000, 0x7000_8000), ("vdso", 0x7000_8000, 0x7000_a000)]
    assert layout.needs_hop(layout.match_specials(CUR, target))
    same = [("vvar", 0x7000_0000, 0x7000_6000), ("vdso", 0x7000_6000, 0x7000_8000)]
    assert not layout.needs_hop(layout.match_specials(CUR, same))


def test_match_specials_refuses_other_layouts():
    with pytest.raises(ValueError, match="differs"):
        layout.match_specials(CUR, [("vvar", 0x6000_0000, 0x6000_4000), ("vdso", 0x6000_4000, 0x6000_6000)])
    with pytest.raises(ValueError, match="no vDSO"):
        layout.match_specials(CUR, [])


def test_gadget_search():
    code = bytes.fromhex("90 0f05 c9 31d2 4531c0 c3 90 0f05 31d2 31c9 4531db c3 0f05 5d c3")
    assert gadgets.find_unmap_gadget(code) == (11, gadgets.RET)
    assert gadgets.find_unmap_gadget(code[:12]) == (1, gadgets.LEAVE_RET)
    assert gadgets.find_unmap_gadget(bytes.fromhex("0f05 5d c3 0f05 4889c7 c3")) is None


def test_this_vdso_has_a_gadget():
    """The restorer's self-unmap relies on one; say so loudly if a kernel drops it."""
    with open("/proc/self/maps") as f:
        line = next(ln for ln in f if ln.rstrip().endswith("[vdso]"))
    start, end = (int(x, 16) for x in line.split()[0].split("-"))
    found = gadgets.find_unmap_gadget(ctypes.string_at(start, end - start))
    assert found is not None, "no `syscall; [leave]; xor...; ret` gadget in this vDSO"


def test_task_restorer_and_sigreturn_search(tmp_path):
    acts = [(0, 0, 0, 0)] * 64
    assert gadgets.task_restorer(acts) == 0
    acts[9] = (0x4000, gadgets.SA_RESTORER | 0x10000000, 0x5000, 0)
    assert gadgets.task_restorer(acts) == 0x5000
    lib = tmp_path / "lib"
    lib.write_bytes(b"\x90" * 5000 + gadgets.SIGRETURN_CODE + b"\x90" * 100)
    text = Area(0x10000, 0x12000, 4096, 5, 2, 0x41, 0, "file_private", path=str(lib))
    data = Area(0x12000, 0x13000, 0, 3, 2, 0x41, 0, "file_private", path=str(lib))

    def read(path, off, n):
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)

    assert gadgets.find_sigreturn([data, text], read) == 0x10000 + 5000 - 4096
