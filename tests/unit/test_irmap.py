"""crpy.resources.irmap: the path of an inode found by a scan of its filesystem's mounts (the
fallback for inotify watches whose file handle cannot be opened, as on ramfs)."""

import ctypes
import os

import pytest

from crpy.errors import RestoreError
from crpy.resources import irmap


def _sdev(st_dev):
    """The kernel's dev_t encoding fdinfo shows (major << 20 | minor)."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


@pytest.fixture
def ramfs(tmp_path):
    libc = ctypes.CDLL(None, use_errno=True)
    top = tmp_path / "ramfs"
    top.mkdir()
    if libc.mount(b"none", str(top).encode(), b"ramfs", 0, None) != 0:
        pytest.skip(f"cannot mount a ramfs here: {os.strerror(ctypes.get_errno())}")
    try:
        yield top
    finally:
        libc.umount2(str(top).encode(), 2)        # MNT_DETACH


def test_a_file_deep_down_is_found_and_opened(ramfs):
    deep = ramfs / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    for n in range(50):
        (ramfs / "a" / f"other{n}").write_text("y")
    st = os.stat(deep / "f")
    irmap._found.clear()
    assert irmap.find_path(_sdev(st.st_dev), st.st_ino) == str(deep / "f")
    fd = irmap.open_checked(str(deep / "f"), _sdev(st.st_dev), st.st_ino)
    os.close(fd)
    assert irmap.find_path(_sdev(st.st_dev), os.stat(ramfs).st_ino) == str(ramfs)


def test_an_inode_not_there_is_none_and_a_changed_path_is_refused(ramfs):
    (ramfs / "f").write_text("x")
    (ramfs / "g").write_text("x")
    st, other = os.stat(ramfs / "f"), os.stat(ramfs / "g")
    irmap._found.clear()
    assert irmap.find_path(_sdev(st.st_dev), 999999999) is None
    with pytest.raises(RestoreError, match=f"is inode {other.st_ino} .* not inode {st.st_ino}"):
        irmap.open_checked(str(ramfs / "g"), _sdev(st.st_dev), st.st_ino)
