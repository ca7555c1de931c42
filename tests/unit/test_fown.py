"""crpy.resources.fown: file owners read from a description, written into any kind's files.img
entry, and set again on a new fd; crpy.resources.ctty's TIOCGDEV decoding."""

import fcntl
import os
import struct

import pytest

from crpy.images.pb import fdinfo_pb2, pipe_pb2, regfile_pb2
from crpy.resources import ctty, fown
from crpy.resources.regfile import fown as no_fown


def _pipe_entry(flags=0):
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.PIPE, id=3, pipe=pipe_pb2.pipe_entry(
        id=3, pipe_id=77, flags=flags, fown=no_fown()))


def test_owner_read_back_from_a_description():
    r, w = os.pipe()
    try:
        assert fown.read_owner(r).none
        fcntl.fcntl(r, fown.F_SETOWN_EX, struct.pack("ii", fown.F_OWNER_PGRP, os.getpgrp()))
        fcntl.fcntl(r, fown.F_SETSIG, 40)
        owner = fown.read_owner(r)
        assert (owner.pid_type, owner.pid, owner.signum) == (fown.F_OWNER_PGRP, os.getpgrp(), 40)
        assert (owner.uid, owner.euid) == (os.getuid(), os.geteuid())
    finally:
        os.close(r), os.close(w)


def test_owner_goes_into_the_kind_entry_and_back_onto_an_fd():
    owner = fown.Owner(fown.F_OWNER_PID, os.getpid(), 36, os.getuid(), os.geteuid())
    entry = fown.fill(_pipe_entry(flags=os.O_RDONLY | fown.O_ASYNC), owner)
    assert (entry.pipe.fown.pid, entry.pipe.fown.signum, entry.pipe.fown.pid_type) == (os.getpid(), 36, 1)
    r, w = os.pipe()
    try:
        fown.restore(r, entry)
        assert fown.read_owner(r) == owner
        assert fcntl.fcntl(r, fcntl.F_GETFL) & fown.O_ASYNC
    finally:
        os.close(r), os.close(w)


def test_no_owner_leaves_the_entry_alone_and_a_kind_without_fown_says_so():
    entry = _pipe_entry()
    assert fown.fill(entry, None) is entry and fown.fill(entry, fown.NO_OWNER).pipe.fown.pid == 0
    fifo = fdinfo_pb2.file_entry(type=fdinfo_pb2.FIFO, id=4)
    fifo.fifo.id, fifo.fifo.pipe_id = 4, 5
    with pytest.raises(Exception, match="keeps no owner"):
        fown.fill(fifo, fown.Owner(fown.F_OWNER_PID, 1, 0))
    reg = fdinfo_pb2.file_entry(type=fdinfo_pb2.REG, id=5, reg=regfile_pb2.reg_file_entry(
        id=5, flags=0, pos=0, fown=no_fown(), name="/x"))
    assert fown.fill(reg, fown.Owner(fown.F_OWNER_PID, 9, 0)).reg.fown.pid == 9


def test_tiocgdev_decodes_the_kernels_device_encoding():
    r, w = os.pipe()
    try:
        with pytest.raises(OSError):
            ctty._tiocgdev(r)                 # not a terminal
    finally:
        os.close(r), os.close(w)
    m = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(m, 0x40045431, struct.pack("i", 0))            # TIOCSPTLCK: unlock
        s = os.open(_ptsname(m), os.O_RDWR | os.O_NOCTTY)
        try:
            assert ctty._tiocgdev(s) == os.fstat(s).st_rdev
        finally:
            os.close(s)
    finally:
        os.close(m)


def _ptsname(m):
    return f"/dev/pts/{struct.unpack('I', fcntl.ioctl(m, 0x80045430, b'0000'))[0]}"


TREE_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int p[2], q[2];
    pipe(p);
    fcntl(p[0], F_SETOWN, getpid());        /* owned by the root, inherited by every child */
    dup2(p[0], 10);
    open("/dev/null", O_RDONLY);            /* fd 5 and fd 6: two descriptions of one inode */
    open("/dev/null", O_RDONLY);
    for (int i = 0; i < 3; i++)
        if (fork() == 0) {
            if (i == 1) {                   /* a description of its own, owned by itself */
                pipe(q);
                fcntl(q[0], F_SETOWN, getpid());
            }
            for (;;) pause();
        }
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def test_a_tree_shares_inherited_descriptions_and_each_owner_is_dumped_once(tmp_path):
    """An owner belongs to the open description: the root's, inherited by its children, is in the
    one files.img entry all of them point at; the child's own pipe has its owner in its entry.
    Two descriptions of one inode stay two ids, shared by every task that inherited them."""
    from crpy.resources.fdtable import read_fdinfo, read_files
    from tests.unit.crhelpers import build_c, crpy, kill_quietly, start_target

    exe = build_c(tmp_path, "fown_tree", TREE_C)
    ready = tmp_path / "ready"
    p = start_target([exe, ready], lambda: ready.exists() and ready.read_text().endswith("\n"))
    try:
        kids = []
        while len(kids) < 3:
            kids = [int(x) for x in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()]
        res = crpy("dump", "-t", p.pid, "-D", tmp_path, "--leave-running")
        assert res.returncode == 0, res.stderr
        files = read_files(tmp_path)
        fds = {pid: {e.fd: e.id for e in read_fdinfo(tmp_path, pid)} for pid in [p.pid] + kids}
        root = fds[p.pid]
        assert root[3] == root[10] and root[5] != root[6], root
        for kid in kids:
            assert all(fds[kid][fd] == root[fd] for fd in (0, 1, 2, 3, 4, 5, 6, 10)), (kid, fds[kid], root)
        assert files[root[3]].pipe.fown.pid == p.pid
        owned = [(kid, fds[kid][fd]) for kid in kids for fd in fds[kid] if fd not in root]
        assert len(owned) == 2                          # the one child's own pipe, both ends
        assert sorted(files[fid].pipe.fown.pid for _, fid in owned) == [0, owned[0][0]]
    finally:
        kill_quietly(p.pid)
        for kid in kids:
            kill_quietly(kid)
        p.wait()
