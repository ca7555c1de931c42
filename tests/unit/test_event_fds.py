"""Parsers of the event and notification fds' /proc fdinfo (epoll, timerfd, inotify) and the
file handle encoding CRIU's fh_entry uses: fed the text the kernel prints."""

import os

from crpy.resources import eventpoll, fanotify, fhandle, inotify, pidfd, timerfd

EPOLL_FDINFO = """pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t1038
tfd:        4 events: 40000000 data:                4  pos:0 ino:40e sdev:10
tfd:       10 events: 80000019 data:      10000000000  pos:12 ino:2bdd9 sdev:e
"""

INOTIFY_FDINFO = """pos:\t0
flags:\t04000
mnt_id:\t17
ino:\t1038
inotify wd:3 ino:3f7e8 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:e8f7030000000000
inotify wd:1 ino:2 sdev:fe00000 mask:4 ignored_mask:0 fhandle-bytes:c fhandle-type:81 f_handle:02000000000000000a0b0c0d
"""


def test_epoll_registrations_parse():
    assert eventpoll.parse_fdinfo(EPOLL_FDINFO) == [
        (4, 0x40000000, 4, 0, 0x40E, 0x10), (10, 0x80000019, 1 << 40, 12, 0x2BDD9, 0xE)]


def test_a_fired_one_shot_is_told_from_an_armed_one():
    assert eventpoll._fired(0x40000000) and eventpoll._fired(0xC0000000)
    assert not eventpoll._fired(0x40000001) and not eventpoll._fired(0x19)


def test_timerfd_fdinfo_parse():
    raw = {"clockid": "1", "ticks": "3", "settime flags": "01", "it_value": "(2, 500000000)",
           "it_interval": "(3600, 0)"}
    assert timerfd.parse(raw) == (1, 3, 1, 2_500_000_000, 3600 * 10**9)


def test_inotify_watches_parse():
    assert inotify.parse_fdinfo(INOTIFY_FDINFO) == [
        (3, 0x3F7E8, 0xFE00000, 0x100, 0, 8, 1, "e8f7030000000000"),
        (1, 2, 0xFE00000, 4, 0, 12, 0x81, "02000000000000000a0b0c0d")]


def test_file_handles_are_kept_as_criu_keeps_them():
    fh = fhandle.fh_entry(12, 0x81, "02000000000000000a0b0c0d")
    assert fh.bytes == 12 and fh.type == 0x81 and len(fh.handle) == 16      # CRIU's 16 words
    assert fh.handle[0] == 2 and fh.handle[1] == 0x0D0C0B0A and not any(fh.handle[2:])
    assert fhandle.handle_bytes(fh) == bytes.fromhex("02000000000000000a0b0c0d")


def test_kernel_device_numbers_become_stat_ones():
    assert fhandle.kernel_dev(0xFE00000) == os.makedev(254, 0)
    assert fhandle.kernel_dev((8 << 20) | 17) == os.makedev(8, 17)


def test_a_file_handle_opens_the_object_again(tmp_path):
    """What the restore does with a watch: the handle name_to_handle_at gives opens the file."""
    import ctypes
    import struct

    path = tmp_path / "watched"
    path.write_text("x")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("<I", buf, 0, 128)
    mnt = ctypes.c_int()
    assert libc.name_to_handle_at(-100, str(path).encode(), buf, ctypes.byref(mnt), 0) == 0, os.strerror(ctypes.get_errno())
    nbytes, htype = struct.unpack_from("<Ii", buf)
    fh = fhandle.fh_entry(nbytes, htype, buf.raw[8:8 + nbytes].hex())
    st = os.stat(path)
    sdev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
    fd = fhandle.open_handle(fh, sdev)
    try:
        assert os.fstat(fd).st_ino == st.st_ino
    finally:
        os.close(fd)


def test_pidfd_target_is_the_innermost_nspid():
    assert pidfd.target_pid({"Pid": "16069", "NSpid": "16069"}) == 16069
    assert pidfd.target_pid({"Pid": "900", "NSpid": "900\t7"}) == 7
    assert pidfd.target_pid({"Pid": "-1", "NSpid": "-1"}) == -1


def test_refused_kinds_are_named():
    """What the one-line refusal calls each anon inode kind crpy does not dump."""
    from crpy import resources

    st = os.stat("/")
    names = {"[io_uring]": "io_uring", "[userfaultfd]": "userfaultfd", "[perf_event]": "perf event",
             "bpf-map": "bpf map", "bpf-prog": "bpf program"}
    for inode, kind in names.items():
        assert resources.classify("anon_inode:" + inode, st) == kind
        assert not resources.supported(kind)
    for kind in ("eventfd", "timerfd", "signalfd", "eventpoll", "inotify", "fanotify", "pidfd"):
        assert resources.supported(kind)


def test_fanotify_group_and_marks_parse():
    text = ("pos:\t0\nflags:\t04000\nfanotify flags:2 event-flags:8000\n"
            "fanotify ino:20c448 sdev:fe00000 mflags:40 mask:0 ignored_mask:20 fhandle-bytes:8 fhandle-type:1 "
            "f_handle:48c42000553f2429\n"
            "fanotify mnt_id:1d mflags:0 mask:8 ignored_mask:0\n")
    group, marks, others = fanotify.parse_fdinfo(text)
    assert group == (2, 0x8000)
    assert marks == [(0x20C448, 0xFE00000, 0x40, 0, 0x20, 8, 1, "48c42000553f2429")]
    assert others == ["fanotify mnt_id:1d mflags:0 mask:8 ignored_mask:0"]
