"""Unit tests of where a tree's task gets its restorer region: planned by the parent that forks
it, from the parent's maps (crpy.restore.child.plan_for_child), and planned again by the task
itself when the parent mapped something there since (child._reserve_region); and what every task
of a tree shares without walking or copying it (the fd table sharers, files.img's entries)."""

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
    monkeypatch.setattr(child, "_plan", lambda task, maps=None: seen.append(maps) or SimpleNamespace(task=task))
    monkeypatch.setattr(child, "_vdso_moves", lambda plan: ([], False, (0, 0), None))
    monkeypatch.setattr(child, "_frame_and_gadget", lambda task, pair: None)
    assert [child.plan_for_child(t).task for t in ("a", "b", "c")] == ["a", "b", "c"]
    assert len(reads) == 1 and seen == [[(0x1000, 0x2000, "")]] * 3


def test_a_child_that_cannot_be_planned_by_its_parent_plans_itself(monkeypatch):
    from crpy.errors import RestoreError

    def refuse(task, maps=None):
        raise RestoreError("no room for the restorer region")

    monkeypatch.setattr(child, "_plan", refuse)
    assert child.plan_for_child("a") is None


def test_fd_table_sharers_are_counted_once_per_table_at_any_depth():
    from crpy.restore.tree import Node, files_sharers

    def node(pid, ppid, shares):
        n = Node(pid, ppid, 1, 1)
        n.shares_files = shares
        return n

    nodes = {n.pid: n for n in (node(1, 0, False), node(2, 1, True), node(3, 2, True),
                                node(4, 1, False), node(5, 4, True), node(6, 4, False))}
    assert files_sharers(nodes) == {1: 2, 4: 1}


def _write_files(d, *ids):
    from crpy.images import framing
    from crpy.images.pb import fdinfo_pb2

    entries = []
    for i in ids:
        entry = fdinfo_pb2.file_entry(type=fdinfo_pb2.REG, id=i)
        entry.reg.id, entry.reg.flags, entry.reg.pos, entry.reg.name = i, 0, 0, "/x"
        entry.reg.fown.uid = entry.reg.fown.euid = entry.reg.fown.signum = 0
        entry.reg.fown.pid_type = entry.reg.fown.pid = 0
        entries.append(entry)
    framing.write_image(framing.image_path(str(d), "files"), "files", entries)
    return entries[0]


def test_the_files_a_task_inherits_are_read_only(tmp_path):
    """A task gets crpy's parsed files.img entries as they are (a copy would write to all of
    them): anything that tried to change them would change every later task's."""
    from crpy.resources import fdtable

    entry = _write_files(tmp_path, 7)
    files = fdtable.read_files(str(tmp_path))
    assert list(files) == [7] and files is fdtable.read_files(str(tmp_path))
    with pytest.raises(TypeError):
        files[8] = entry


def test_an_fd_image_is_parsed_again_only_when_its_bytes_change(tmp_path):
    from crpy.images import framing
    from crpy.resources import fdtable

    path = framing.image_path(str(tmp_path), "files")
    _write_files(tmp_path, 1, 2)
    first = fdtable._parsed(path, "files")[1]
    assert fdtable._parsed(path, "files")[1] is first and [e.id for e in first] == [1, 2]
    _write_files(tmp_path, 3)
    assert [e.id for e in fdtable._parsed(path, "files")[1]] == [3]


def test_parent_builds_the_signal_frame_with_the_plan_or_leaves_it_to_the_child(monkeypatch):
    from crpy.errors import RestoreError

    monkeypatch.setattr(child, "_maps_here", [0, None])
    monkeypatch.setattr(child, "_self_maps", lambda: [])
    monkeypatch.setattr(child, "_plan", lambda task, maps=None: SimpleNamespace())
    monkeypatch.setattr(child, "_vdso_moves", lambda plan: ([], False, (0, 0), ("vdso pair")))
    monkeypatch.setattr(child, "_frame_and_gadget", lambda task, pair: ("frame", task, pair))
    assert child.plan_for_child("t").frame == ("frame", "t", "vdso pair")

    def refuse(task, pair):
        raise RestoreError("no sigreturn code")

    monkeypatch.setattr(child, "_frame_and_gadget", refuse)
    plan = child.plan_for_child("t")
    assert plan is not None and getattr(plan, "frame", None) is None
