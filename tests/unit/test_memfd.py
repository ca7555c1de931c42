"""crpy.resources.memfd: names, contents saved as CRIU does (pagemap-shmem + pages) and made
again with their seals, mode and size; and the memfds a dump refuses, with one line, leaving the
task as it was.  (The whole dump/restore of memfd fds: tests/zdtm/memfd_fd.c, memfd_map_fd.c.)"""

import fcntl
import os
import subprocess

import pytest
from tests.unit.crhelpers import build_c, crpy, wait_for

from crpy import resources
from crpy.images import framing
from crpy.images.pb import memfd_pb2
from crpy.resources import memfd

PAGE = 4096


def test_name_of_strips_prefix_and_deleted():
    assert memfd.name_of("/memfd:crpy-a (deleted)") == "crpy-a"
    assert memfd.name_of("/memfd:with space (deleted)") == "with space"
    assert memfd.name_of("/memfd: (deleted)") == ""


def test_classify_names_memfds():
    fd = os.memfd_create("crpy-unit", os.MFD_CLOEXEC)
    try:
        st = os.fstat(fd)
        assert resources.classify(os.readlink(f"/proc/self/fd/{fd}"), st) == "memfd"
        assert resources.supported("memfd") and resources.fd_type("memfd") == "MEMFD"
    finally:
        os.close(fd)


def test_hugetlb_memfd_is_refused():
    try:
        fd = os.memfd_create("crpy-huge", os.MFD_CLOEXEC | os.MFD_HUGETLB)
    except OSError:
        pytest.skip("no hugetlbfs for memfd here")
    try:
        kind = resources.classify(os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd))
        assert kind == "hugetlb memfd" and not resources.supported(kind)
    finally:
        os.close(fd)


def _saved(tmp_path, fd, name, seals):
    """What a dump writes for memfd `fd`: its contents images and its inode entry."""
    st = os.fstat(fd)
    memfd._dump_contents(fd, st, str(tmp_path), 1)
    return memfd_pb2.memfd_inode_entry(name=name, uid=st.st_uid, gid=st.st_gid, size=st.st_size,
                                       shmid=st.st_ino, seals=seals, inode_id=1, mode=st.st_mode)


def test_contents_round_trip_with_holes_seals_and_mode(tmp_path):
    data = os.urandom(3 * PAGE + 100)
    fd = os.memfd_create("crpy-unit", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.pwrite(fd, data[:PAGE], 0)
        os.pwrite(fd, data[2 * PAGE:], 2 * PAGE)          # page 1 stays a hole
        os.fchmod(fd, 0o640)
        seals = memfd.F_SEAL_GROW | memfd.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        inode = _saved(tmp_path, fd, "crpy-unit", seals)
    finally:
        os.close(fd)
    pm = framing.read_image(framing.image_path(tmp_path, "pagemap_shmem", inode.shmid), "pagemap_shmem")
    assert [(e.vaddr, framing.pagemap_nr_pages(e)) for e in pm[1:]] == [(0, 1), (2 * PAGE, 2)]
    new = memfd.make_inode(str(tmp_path), inode)
    try:
        st = os.fstat(new)
        assert st.st_size == len(data) and st.st_mode & 0o7777 == 0o640
        want = data[:PAGE] + bytes(PAGE) + data[2 * PAGE:]
        assert os.pread(new, len(data) + 10, 0) == want
        assert fcntl.fcntl(new, fcntl.F_GET_SEALS) == seals
        assert os.readlink(f"/proc/self/fd/{new}") == "/memfd:crpy-unit (deleted)"
        with pytest.raises(OSError):
            os.pwrite(new, b"x", 0)                       # F_SEAL_WRITE is back
    finally:
        os.close(new)


def test_unsealable_memfd_comes_back_unsealable(tmp_path):
    fd = os.memfd_create("crpy-plain", os.MFD_CLOEXEC)
    try:
        inode = _saved(tmp_path, fd, "crpy-plain", fcntl.fcntl(fd, fcntl.F_GET_SEALS))
    finally:
        os.close(fd)
    assert inode.seals == memfd.F_SEAL_SEAL and inode.size == 0
    new = memfd.make_inode(str(tmp_path), inode)
    try:
        assert fcntl.fcntl(new, fcntl.F_GET_SEALS) == memfd.F_SEAL_SEAL
        assert os.fstat(new).st_size == 0
    finally:
        os.close(new)


def test_descriptions_open_on_one_inode(tmp_path):
    """restore_fd: each entry a new description (own flags and offset) on the one inode."""
    from crpy.images.pb import fdinfo_pb2
    from crpy.resources.fdtable import RestoreContext
    from crpy.resources.regfile import fown

    fd = os.memfd_create("crpy-two", os.MFD_CLOEXEC)
    os.write(fd, b"0123456789")
    inode = _saved(tmp_path, fd, "crpy-two", memfd.F_SEAL_SEAL)
    os.close(fd)
    framing.write_image(framing.image_path(tmp_path, "memfd_inode"), "memfd_inode", [inode])

    def entry(fid, flags, pos):
        return fdinfo_pb2.file_entry(type=fdinfo_pb2.MEMFD, id=fid, memfd=memfd_pb2.memfd_file_entry(
            id=fid, flags=flags, pos=pos, fown=fown(), inode_id=1))

    ctx = RestoreContext(str(tmp_path), {}, 100)
    a = memfd.restore_fd(entry(1, os.O_RDWR, 3), ctx)
    b = memfd.restore_fd(entry(2, os.O_RDONLY, 7), ctx)
    try:
        assert os.lseek(a, 0, os.SEEK_CUR) == 3 and os.lseek(b, 0, os.SEEK_CUR) == 7
        assert fcntl.fcntl(b, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        os.write(a, b"X")
        assert os.pread(b, 10, 0) == b"012X456789"
    finally:
        os.close(a)
        os.close(b)
        ctx.finish()


_PART_MAPPED = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int fd = memfd_create("crpy-part", 0);
    char *p;
    ftruncate(fd, 4 * 4096);
    pwrite(fd, "tail", 4, 3 * 4096);             /* data past the mapping */
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(p, "head");
    FILE *f = fopen(argv[1], "w");
    fputs("ready", f);
    fclose(f);
    for (;;)
        pause();
}
"""


def test_fd_and_partial_mapping_refused_task_untouched(tmp_path):
    exe = build_c(tmp_path, "part", _PART_MAPPED)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([exe, str(ready)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(ready.exists, what="the target")
        maps = open(f"/proc/{proc.pid}/maps").read()
        res = crpy("dump", "-t", proc.pid, "-D", tmp_path / "img")
        assert res.returncode == 1
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "memfd open and mapped only in part" in lines[0], res.stderr
        assert "Traceback" not in res.stderr
        assert proc.poll() is None and open(f"/proc/{proc.pid}/maps").read() == maps
        status = open(f"/proc/{proc.pid}/status").read()
        assert "TracerPid:\t0" in status
    finally:
        proc.kill()
        proc.wait()
