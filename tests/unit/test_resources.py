"""crpy.resources: classify open files, and the fd table restored in a real child process."""

import json
import os
import socket
import subprocess
import sys

import pytest

from crpy import resources
from crpy.errors import RestoreError
from crpy.images import framing
from crpy.images.pb import core_pb2, fdinfo_pb2
from crpy.resources import regfile

O_CLOEXEC = 0o2000000


def test_classify_kinds(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    assert resources.classify(str(f), os.stat(f)) == "reg"
    assert resources.classify("/dev/null", os.stat("/dev/null")) == "reg"
    assert resources.classify(str(tmp_path), os.stat(tmp_path)) == "reg"
    r, w = os.pipe()
    try:
        assert resources.classify(f"pipe:[{os.fstat(r).st_ino}]", os.fstat(r)) == "pipe"
    finally:
        os.close(r), os.close(w)
    s = socket.socket()
    try:
        assert resources.classify(f"socket:[{os.fstat(s.fileno()).st_ino}]", os.fstat(s.fileno())) == "socket"
    finally:
        s.close()
    assert resources.classify("anon_inode:[eventfd]", os.stat("/dev/null")) == "eventfd"
    assert resources.classify(str(f) + " (deleted)", os.stat(f)) == "ghost"
    assert resources.classify(str(tmp_path) + " (deleted)", os.stat(tmp_path)) == "ghost"      # a ghost directory
    assert resources.classify("/dev/null (deleted)", os.stat("/dev/null")) == "ghost"         # a ghost device node
    assert resources.classify("/dev/tty (deleted)", os.stat("/dev/tty")) == "unlinked file"
    own_net = os.readlink("/proc/self/ns/net")
    assert resources.classify(own_net, os.stat("/proc/self/ns/net")) == "ns"
    assert "other than crpy's own" in resources.classify(own_net, os.stat("/proc/self/ns/uts"))
    assert resources.supported("reg") and resources.supported("pipe") and not resources.supported("socket")
    assert resources.module("reg") is regfile


def _write_fd_images(d, pid, fds):
    """fds: [(fd, path, open flags, pos, cloexec)] -> ids, fdinfo and files images."""
    files, infos = [], []
    for i, (fd, path, flags, pos, cloexec) in enumerate(fds, 1):
        files.append(regfile.file_entry(i, path, os.stat(path), flags, pos))
        infos.append(fdinfo_pb2.fdinfo_entry(id=i, flags=1 if cloexec else 0, type=fdinfo_pb2.REG, fd=fd))
    framing.write_image(framing.image_path(d, "ids", pid), "ids",
                        [core_pb2.task_kobj_ids_entry(vm_id=1, files_id=1, fs_id=1, sighand_id=1)])
    framing.write_image(framing.image_path(d, "fdinfo", 1), "fdinfo", infos)
    framing.write_image(framing.image_path(d, "files"), "files", files)


CHILD = r"""
import fcntl, json, os, sys
sys.path.insert(0, os.getcwd())
keep = 100
out = os.fdopen(os.dup2(1, 150), "w")         # crpy's own fds sit above keep_above
os.open("/dev/null", os.O_RDONLY)             # strays below keep_above that must go
os.open("/dev/null", os.O_RDONLY)
from crpy.resources.fdtable import restore_fds
from crpy.errors import CrpyError
try:
    restore_fds(sys.argv[1], int(sys.argv[2]), keep)
except CrpyError as e:
    out.write(json.dumps({"error": e.one_line()})); sys.exit(0)
res = {}
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        res[fd] = [os.readlink(f"/proc/self/fd/{fd}"), os.lseek(fd, 0, os.SEEK_CUR),
                   fcntl.fcntl(fd, fcntl.F_GETFL), fcntl.fcntl(fd, fcntl.F_GETFD)]
    except OSError:
        pass
out.write(json.dumps(res))
"""


def _run_child(d, pid):
    p = subprocess.run([sys.executable, "-c", CHILD, str(d), str(pid)], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_restore_fds_places_exactly_the_dumped_fds(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"0123456789" * 100)
    log = tmp_path / "log"
    log.write_bytes(b"abc")
    _write_fd_images(tmp_path, 4242, [
        (0, "/dev/null", os.O_RDONLY, 0, False),
        (1, str(log), os.O_WRONLY | os.O_APPEND, 3, False),
        (3, str(data), os.O_RDWR, 123, True),
        (42, str(data), os.O_RDONLY, 7, False),
    ])
    res = {int(k): v for k, v in _run_child(tmp_path, 4242).items() if int(k) < 100}
    assert sorted(res) == [0, 1, 3, 42], "exactly the dumped fds below keep_above"
    assert res[0][0] == "/dev/null"
    assert res[1][0] == str(log) and res[1][1] == 3 and res[1][2] & os.O_APPEND and res[1][3] == 0
    assert res[3][0] == str(data) and res[3][1] == 123 and res[3][2] & os.O_ACCMODE == os.O_RDWR
    assert res[3][3] == 1, "close-on-exec restored"
    assert res[42][1] == 7 and res[42][2] & os.O_ACCMODE == os.O_RDONLY and res[42][3] == 0


def test_restore_fds_refuses_a_changed_file(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x" * 100)
    _write_fd_images(tmp_path, 4243, [(3, str(data), os.O_RDONLY, 0, False)])
    data.write_bytes(b"x" * 101)
    res = _run_child(tmp_path, 4243)
    assert "size is now 101, was 100" in res["error"]


def test_restore_fds_refuses_a_missing_file(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x")
    _write_fd_images(tmp_path, 4244, [(5, str(data), os.O_RDONLY, 0, False)])
    data.unlink()
    assert "cannot open" in _run_child(tmp_path, 4244)["error"]


def test_open_reg_checks_file_type(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"")
    e = regfile.reg_entry(1, str(f), os.stat(f))
    f.unlink()
    os.mkfifo(f)
    with pytest.raises(RestoreError) as info:
        regfile.open_reg(e, os.O_RDONLY | os.O_NONBLOCK)
    assert "file type" in info.value.one_line()


def test_reg_entry_of_dev_null():
    e = regfile.reg_entry(1, "/dev/null", os.stat("/dev/null"), os.O_WRONLY | O_CLOEXEC)
    assert e.flags == os.O_WRONLY and not e.HasField("size") and e.mode == os.stat("/dev/null").st_mode
    fd = regfile.open_reg(e)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat("/dev/null"))
    finally:
        os.close(fd)


def test_device_number_is_checked(tmp_path):
    e = regfile.reg_entry(1, "/dev/null", os.stat("/dev/null"))
    assert e.rdev == os.stat("/dev/null").st_rdev
    e.rdev = os.stat("/dev/zero").st_rdev          # as if /dev/null had been replaced by another node
    with pytest.raises(RestoreError) as info:
        regfile.open_reg(e)
    assert "is device 1:3, was 1:5" in info.value.one_line()


def test_restore_fds_shares_one_description_between_dup_fds(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"z" * 50)
    framing.write_image(framing.image_path(tmp_path, "ids", 4245), "ids",
                        [core_pb2.task_kobj_ids_entry(vm_id=1, files_id=1, fs_id=1, sighand_id=1)])
    framing.write_image(framing.image_path(tmp_path, "files"), "files",
                        [regfile.file_entry(1, str(data), os.stat(data), os.O_RDWR, 10)])
    framing.write_image(framing.image_path(tmp_path, "fdinfo", 1), "fdinfo",
                        [fdinfo_pb2.fdinfo_entry(id=1, flags=0, type=fdinfo_pb2.REG, fd=1),
                         fdinfo_pb2.fdinfo_entry(id=1, flags=1, type=fdinfo_pb2.REG, fd=2)])
    res = {int(k): v for k, v in _run_child(tmp_path, 4245).items() if int(k) < 100}
    assert sorted(res) == [1, 2] and res[1][1] == res[2][1] == 10
    assert (res[1][3], res[2][3]) == (0, 1), "close-on-exec is per fd"
    assert all(v[0] == str(data) for v in res.values())


def test_an_o_path_symlink_fd_reopens_the_symlink_and_checks_its_target(tmp_path):
    from crpy.errors import RestoreError

    link = tmp_path / "link"
    link.symlink_to("first/target")
    flags = regfile.O_PATH | os.O_NOFOLLOW
    reg = regfile.reg_entry(1, str(link), os.lstat(link), flags, symlink_target="first/target")
    fd = regfile.open_reg(reg)
    try:
        assert os.readlink("", dir_fd=fd) == "first/target"
    finally:
        os.close(fd)
    link.unlink()
    link.symlink_to("another/target")
    with pytest.raises(RestoreError, match="symlink to another/target, was to first/target"):
        regfile.open_reg(reg)


def test_fdinfo_lock_lines_give_leases_and_refuse_broken_ones():
    from crpy.resources import locks

    text = ("pos:\t0\nflags:\t02\nlock:\t1: LEASE  ACTIVE    WRITE 17835 fe:00:2150085 0 EOF\n"
            "lock:\t2: LEASE  ACTIVE    READ 17835 fe:00:2150085 0 EOF\n"
            "lock:\t3: LEASE  BREAKING  READ 17835 fe:00:2150085 0 EOF\n"
            "lock:\t4: FLOCK  ADVISORY  WRITE 17835 fe:00:2150085 0 EOF\n"
            "lock:\t5: POSIX  ADVISORY  READ 17835 fe:00:2150085 10 19\n")
    assert locks.parse_fdinfo_locks(text) == [(locks.FL_LEASE, 1, 0, 0), (locks.FL_LEASE, 0, 0, 0), (0, 0, 0, 0),
                                              (locks.FL_FLOCK, 1, 0, 0), (locks.FL_POSIX, 0, 10, 10)]
