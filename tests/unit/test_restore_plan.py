"""Unit tests of where a tree's task gets its restorer region: planned by the parent that forks
it, from the parent's maps (crpy.restore.child.plan_for_child), and planned again by the task
itself when the parent mapped something there since (child._reserve_region)."""

from types import SimpleNamespace

import pytest

from crpy.errors import KernelError
from crpy.kernel.syscalls import NR, sys_call
from crpy.restore import child, layout, premap

MB = 1 << 20


def _plan_at(start, length=4 * MB):
    return layout.RegionPlan(start, length, start, start, start, [])


@pytest.fixture
def two_holes():
    """(taken, free): two adjacent 4 MiB ranges, the first mapped (PROT_NONE), the second free."""
    base = sys_call(NR.mmap, 0, 8 * MB, 0, premap.MAP_PRIVATE | premap.MAP_ANONYMOUS | premap.MAP_NORESERVE, -1, 0)
    sys_call(NR.munmap, base + 4 * MB, 4 * MB)
    yield base, base + 4 * MB
    sys_call(NR.munmap, base, 8 * MB)


def test_region_planned_by_the_parent_is_used_when_free(two_holes, monkeypatch):
    _, free = two_holes
    monkeypatch.setattr(child, "_plan", lambda *a: pytest.fail("planned again"))
    plan = _plan_at(free)
    assert child._reserve_region(SimpleNamespace(pid=1), plan) is plan
    with pytest.raises(KernelError):             # reserved now: a second reservation is refused
        premap.reserve_region(plan)


def test_region_taken_since_the_parent_planned_it_is_planned_again(two_holes, monkeypatch):
    taken, free = two_holes
    fresh = _plan_at(free)
    monkeypatch.setattr(child, "_plan", lambda task, maps=None: fresh)
    assert child._reserve_region(SimpleNamespace(pid=1), _plan_at(taken)) is fresh
    with pytest.raises(KernelError):
        premap.reserve_region(fresh)


def test_parent_reads_its_maps_once_for_all_its_children(monkeypatch):
    reads, seen = [], []
    monkeypatch.setattr(child, "_maps_here", [0, None])
    monkeypatch.setattr(child, "_self_maps", lambda: reads.append(1) or [(0x1000, 0x2000, "")])
    monkeypatch.setattr(child, "_plan", lambda task, maps=None: seen.append(maps) or task)
    assert [child.plan_for_child(t) for t in ("a", "b", "c")] == ["a", "b", "c"]
    assert len(reads) == 1 and seen == [[(0x1000, 0x2000, "")]] * 3


def test_a_child_that_cannot_be_planned_by_its_parent_plans_itself(monkeypatch):
    from crpy.errors import RestoreError

    def refuse(task, maps=None):
        raise RestoreError("no room for the restorer region")

    monkeypatch.setattr(child, "_plan", refuse)
    assert child.plan_for_child("a") is None
