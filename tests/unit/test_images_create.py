"""crpy.images.create: image directories and files are private and never written through a link
planted under an image's name; crpy.faults parses CRPY_FAULT=NAME[@PID][:pause]."""

import os
import stat

import pytest

from crpy import faults
from crpy.errors import DumpError, ImageError, RestoreError
from crpy.images.create import create_image, make_images_dir


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_dirs_and_images_private_under_any_umask(tmp_path):
    old = os.umask(0o277)
    try:
        make_images_dir(tmp_path / "a" / "b")
        os.close(create_image(tmp_path / "a" / "b" / "core-1.img"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "b") == 0o700
    assert _mode(tmp_path / "a" / "b" / "core-1.img") == 0o600


def test_existing_dir_is_left_as_it_is(tmp_path):
    os.chmod(tmp_path, 0o755)
    make_images_dir(tmp_path)
    assert _mode(tmp_path) == 0o755


def test_an_old_image_is_replaced(tmp_path):
    path = tmp_path / "core-1.img"
    path.write_bytes(b"old image")
    fd = create_image(path)
    os.write(fd, b"new")
    os.close(fd)
    assert path.read_bytes() == b"new"


@pytest.mark.parametrize("planted", ["symlink", "dangling symlink", "hardlink", "fifo"])
def test_planted_names_refused(tmp_path, planted):
    target = tmp_path / "precious"
    target.write_text("keep")
    path = tmp_path / "pstree.img"
    if planted == "symlink":
        os.symlink(target, path)
    elif planted == "dangling symlink":
        os.symlink(tmp_path / "nothing", path)
    elif planted == "hardlink":
        os.link(target, path)
    else:
        os.mkfifo(path)
    with pytest.raises(ImageError) as e:
        create_image(path)
    assert "refusing" in str(e.value) and str(path) in e.value.one_line()
    assert target.read_text() == "keep"
    assert not (tmp_path / "nothing").exists()


def test_fault_spec(monkeypatch):
    monkeypatch.setattr(faults, "_seen", set())
    monkeypatch.setenv("CRPY_FAULT", "after-pages@42")
    faults.point("after-pages", 41)              # another task: nothing
    faults.point("after-fds", 42)                # another point: nothing
    with pytest.raises(DumpError, match="fault point after-pages in pid 42"):
        faults.point("after-pages", 42)
    faults.point("after-pages", 42)              # once only
    monkeypatch.setenv("CRPY_FAULT", "restore-before-go")
    with pytest.raises(RestoreError):
        faults.point("restore-before-go")


def test_every_point_named_once():
    points = faults.all_points()
    assert len(points) == len(set(points))
    assert all(p.startswith("restore-") for p in faults.RESTORE_POINTS)
    assert not any(p.startswith("restore") for p in faults.DUMP_POINTS)
