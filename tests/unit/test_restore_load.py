"""Unit tests of the restore side's image checks (crpy.restore.load): pagemap runs are split over
the VMAs they cover and must match the pages image exactly, before anything is forked."""

import pytest

from crpy.errors import ImageError
from crpy.restore import load
from crpy.restore.load import PAGE, PE_PARENT, PE_PRESENT, Area

LAZY = 2


def areas():
    return [Area(0x10000, 0x14000, 0, 3, 0x22, 0x201, 0, "anon"),
            Area(0x14000, 0x16000, 0, 3, 0x02, 0x41, 0, "file_private", path="/bin/true"),
            Area(0x20000, 0x22000, 0, 3, 0x01, 0x81, 0, "file_shared", path="/bin/true")]


def pages_file(tmp_path, npages):
    p = tmp_path / "pages-1.img"
    p.write_bytes(b"\xaa" * npages * PAGE)
    return str(p)


def test_runs_split_at_vma_boundaries(tmp_path):
    a = areas()
    ppath = pages_file(tmp_path, 5)
    runs = [(0x12000, 3 * PAGE, PE_PRESENT | LAZY), (0x10000, 2 * PAGE, PE_PRESENT)]
    assert load._place_runs(a, runs, ppath, "pagemap") == 5 * PAGE
    assert a[0].runs == [(0x2000, 2 * PAGE, ppath, 0), (0, 2 * PAGE, ppath, 3 * PAGE)]
    assert a[1].runs == [(0, PAGE, ppath, 2 * PAGE)]


@pytest.mark.parametrize("run,needle", [
    ((0x17000, PAGE, PE_PRESENT), "lies in no restorable VMA"),
    ((0x15000, 2 * PAGE, PE_PRESENT), "lies in no restorable VMA"),
    ((0x20000, PAGE, PE_PRESENT), "lies in a file_shared VMA"),
    ((0x10800, PAGE, PE_PRESENT), "bad run"),
])
def test_runs_outside_private_memory_are_refused(tmp_path, run, needle):
    with pytest.raises(ImageError, match=needle):
        load._place_runs(areas(), [run], pages_file(tmp_path, 2), "pagemap")


def test_parent_pages_take_no_room_and_only_in_anon_memory(tmp_path):
    a = areas()
    runs = [(0x11000, 2 * PAGE, PE_PARENT), (0x10000, PAGE, PE_PRESENT)]
    assert load._place_runs(a, runs, pages_file(tmp_path, 1), "pagemap") == PAGE
    assert a[0].cow_runs == [(0x1000, 2 * PAGE)] and len(a[0].runs) == 1
    with pytest.raises(ImageError, match="from the parent"):
        load._place_runs(areas(), [(0x14000, PAGE, PE_PARENT)], pages_file(tmp_path, 0), "pagemap")


def test_pages_image_must_match_the_pagemap(tmp_path):
    runs = [(0x10000, 2 * PAGE, PE_PRESENT)]
    with pytest.raises(ImageError, match="points past the end"):
        load._place_runs(areas(), runs, pages_file(tmp_path, 1), "pagemap")
    with pytest.raises(ImageError, match="bytes more than"):
        load._place_runs(areas(), runs, pages_file(tmp_path, 3), "pagemap")
    with pytest.raises(ImageError, match="missing"):
        load._place_runs(areas(), runs, str(tmp_path / "none.img"), "pagemap")


def test_vdso_pages_saved_by_criu_are_skipped(tmp_path):
    """CRIU saves the vDSO's pages too; restore uses this kernel's vDSO, but the bytes still
    take their place in the pages image."""
    a = areas() + [Area(0x30000, 0x32000, 0, 5, 0x22, 0x209, 0, "vdso")]
    ppath = pages_file(tmp_path, 3)
    runs = [(0x30000, 2 * PAGE, PE_PRESENT), (0x10000, PAGE, PE_PRESENT)]
    load._place_runs(a, runs, ppath, "pagemap")
    assert a[3].runs == [] and a[0].runs == [(0, PAGE, ppath, 2 * PAGE)]


def test_droppable_vma_is_refused_before_fork_on_a_kernel_without_it(monkeypatch):
    from crpy.errors import RestoreError
    from crpy.images.pb import vma_pb2
    from crpy.restore import premap

    v = vma_pb2.vma_entry(start=0x10000, end=0x12000, pgoff=0, shmid=0, prot=3, flags=0x28, status=0x201, fd=-1)
    assert load._area("mm-1.img", 0, v, {}).kind == "anon"
    monkeypatch.setattr(premap, "droppable_supported", lambda: False)
    with pytest.raises(RestoreError, match="MAP_DROPPABLE"):
        load._area("mm-1.img", 0, v, {})


def test_shared_object_pages_keep_their_object_offsets(tmp_path):
    """A VMA that maps pages 2-3 of a 6-page object: it shows only those; the object keeps all."""
    from crpy.images import framing
    from crpy.images.pb import pagemap_pb2

    spath = framing.image_path(str(tmp_path), "pagemap_shmem", 7)
    framing.write_image(spath, "pagemap_shmem", [pagemap_pb2.pagemap_head(pages_id=1),
                                                 framing.new_pagemap_entry(0, 4, PE_PRESENT),
                                                 framing.new_pagemap_entry(5 * PAGE, 1, PE_PRESENT)])
    ppath = pages_file(tmp_path, 5)
    area = Area(0x10000, 0x12000, 2 * PAGE, 3, 0x21, 0x101, 0, "anon_shared", shmid=7, shmem_size=6 * PAGE)
    assert load._add_shmem(area, framing, spath) == 5 * PAGE
    assert area.runs == [(0, 2 * PAGE, ppath, 2 * PAGE)]
    assert area.object_runs == [(0, 4 * PAGE, ppath, 0), (5 * PAGE, PAGE, ppath, 4 * PAGE)]
    assert not area.whole_object
    area.shmem_size = 4 * PAGE
    with pytest.raises(ImageError, match="lies outside the object"):
        load._add_shmem(area, framing, spath)


def _file_vma(start, shmid=5):
    from crpy.images.pb import vma_pb2
    from crpy.images.vma_status import VMA_AREA_REGULAR, VMA_FILE_PRIVATE

    return vma_pb2.vma_entry(start=start, end=start + PAGE, pgoff=0, shmid=shmid, prot=1, flags=0x02,
                             status=VMA_AREA_REGULAR | VMA_FILE_PRIVATE, fd=-1)


def test_a_file_mapped_many_times_is_checked_once_per_load(tmp_path, monkeypatch):
    """Every task of a tree maps the same libraries: the file behind a files.img id is found and
    checked once (FilesById.paths), and a file that changed is still refused at its first VMA."""
    from crpy.errors import RestoreError
    from crpy.images.pb import regfile_pb2

    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x" * 100)
    files = load.FilesById()
    files[5] = regfile_pb2.reg_file_entry(id=5, flags=0, pos=0, name=str(lib), size=100)
    checked = []
    real = load._existing_file
    monkeypatch.setattr(load, "_existing_file", lambda *a: checked.append(a[0].id) or real(*a))
    mm = str(tmp_path / "mm-1.img")
    paths = [load._area(mm, i, _file_vma(0x10000 + i * 2 * PAGE), files).path for i in range(3)]
    assert paths == [str(lib)] * 3 and checked == [5]
    files = load.FilesById()
    files[5] = regfile_pb2.reg_file_entry(id=5, flags=0, pos=0, name=str(lib), size=99)
    with pytest.raises(RestoreError, match="size is now 100, was 99"):
        load._area(mm, 0, _file_vma(0x10000), files)
