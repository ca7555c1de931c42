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
