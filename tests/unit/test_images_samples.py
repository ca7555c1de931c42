"""Realistic sample entries for every image kind crpy writes, shared by the image tests.

The contents mirror what a dump of a small single-threaded daemon holds (values shaped like the
CRIU 4.2 fixtures).  The image tests load this file by path (crhelpers.image_samples(); tests/unit
is not a package); the tests below only check that every sample is complete enough to serialize.
"""

import copy
import functools
import struct

from crpy.images import framing, magic

PID = 4242


def _cls(dotted):
    return framing.message_class(dotted)


def sample_xsave_raw(layout):
    """Synthetic but valid standard-format XSAVE bytes for the given layout."""
    end = max(off + size for off, size in layout.values())
    raw = bytearray(max(end, 576))
    struct.pack_into("<HHHHQQII", raw, 0, 0x37F, 0, 0, 0, 0, 0, 0x1F80, 0xFFFF)
    for i in range(32, 416):
        raw[i] = (i * 13 + 1) & 0xFF
    bv = 0
    for comp, (off, size) in layout.items():
        bv |= 1 << comp
        if comp >= 2:
            for i in range(off, off + size):
                raw[i] = (i * 7 + comp) & 0xFF
    struct.pack_into("<QQ", raw, 512, bv, 0)
    return bytes(raw)


# An Intel CPU with AVX-512 and protection keys: standard-format offsets (2688 bytes + PKRU)
INTEL_AVX512_PKRU = {0: (0, 160), 1: (160, 256), 2: (576, 256), 5: (1088, 64), 6: (1152, 512),
                     7: (1664, 1024), 9: (2688, 8)}


def cpuinfo_entry(layout=INTEL_AVX512_PKRU):
    """cpuinfo_entry of a CPU with `layout`, as crpy's dump writes it (with the crpy-only offsets)."""
    entry = _cls("cpuinfo_pb2.cpuinfo_entry")()
    x86 = entry.x86_entry.add(vendor_id=1, cpu_family=6, model=143, stepping=8, capability_ver=2,
                              capability=[0x178BFBFF, 0x2C100800] + [0] * 17, model_id="Intel Xeon",
                              xfeatures_mask=sum(1 << c for c in layout), xsave_size=2696,
                              xsave_size_max=11008)
    for comp, (offset, size) in sorted(layout.items()):
        if comp >= 2:
            x86.xsave_components.add(feature=comp, offset=offset, size=size)
    return entry


def core_entry(layout=None):
    from crpy.cpuinfo import stored_layout
    from crpy.images import xsave

    layout = stored_layout() if layout is None else layout
    core = _cls("core_pb2.core_entry")()
    core.mtype = core.X86_64
    ti = core.thread_info
    ti.clear_tid_addr = 0x7F0012345A10
    regs = dict(r15=1, r14=2, r13=3, r12=0, bp=3, bx=0x7FFD1000, r11=0x202, r10=0, r9=9, r8=7,
                ax=(1 << 64) - 4, cx=0x7F0012300003, dx=0x7FFD1010, si=0, di=0, orig_ax=230,
                ip=0x7F0012300003, cs=0x33, flags=0x202, sp=0x7FFD0FE8, ss=0x2B,
                fs_base=0x7F0012345740, gs_base=0, ds=0, es=0, fs=0, gs=0)
    for name, value in regs.items():
        setattr(ti.gpregs, name, value)
    ti.gpregs.mode = 1
    ti.fpregs.CopyFrom(xsave.from_raw(sample_xsave_raw(layout), layout))
    tc = core.tc
    tc.task_state, tc.exit_code, tc.personality, tc.flags = 1, 0, 0, 0x400000
    tc.blk_sigset, tc.comm, tc.loginuid, tc.oom_score_adj = 0, "counter", 0xFFFFFFFF, 0
    for kind in ("real", "virt", "prof"):
        getattr(tc.timers, kind).SetInParent()
        getattr(tc.timers, kind).isec = 0
        getattr(tc.timers, kind).iusec = 0
        getattr(tc.timers, kind).vsec = 0
        getattr(tc.timers, kind).vusec = 0
    for i in range(16):
        tc.rlimits.rlimits.add(cur=(1 << 64) - 1 if i != 7 else 1024, max=(1 << 64) - 1)
    for sig in range(1, 65):
        if sig in (9, 19):
            continue
        handler = 0x55550000 + sig if sig in (10, 12) else 0
        tc.sigactions.add(sigaction=handler, flags=0x04000000 if handler else 0,
                          restorer=0x7F0012200050 if handler else 0, mask=1 << 14, compat_sigaction=False)
    tc.child_subreaper = False
    th = core.thread_core
    th.futex_rla, th.futex_rla_len = 0x7F0012345A20, 24
    th.sched_nice, th.sched_policy = 0, 0
    th.blk_sigset = 1 << 9
    th.sas.ss_sp, th.sas.ss_size, th.sas.ss_flags = 0, 0, 2
    th.comm = "counter"
    cr = th.creds
    for name in ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid", "secbits"):
        setattr(cr, name, 0)
    cr.cap_inh.extend([0, 0])
    cr.cap_prm.extend([0xFEFFFFFF, 0x1FF])
    cr.cap_eff.extend([0xFEFFFFFF, 0x1FF])
    cr.cap_bnd.extend([0xFEFFFFFF, 0x1FF])
    cr.cap_amb.extend([0, 0])
    cr.no_new_privs = 0
    th.rseq_entry.rseq_abi_pointer, th.rseq_entry.rseq_abi_size = 0x7F0012345FE0, 32
    th.rseq_entry.signature = 0x53053053
    th.cg_set = 1
    return core


def kobj_ids():
    return _cls("core_pb2.task_kobj_ids_entry")(vm_id=1, files_id=1, fs_id=1, sighand_id=1,
                                                 pid_ns_id=1, net_ns_id=2, ipc_ns_id=3, uts_ns_id=4,
                                                 mnt_ns_id=6, user_ns_id=7, cgroup_ns_id=8, time_ns_id=5)


def mm_entry():
    mm = _cls("mm_pb2.mm_entry")(
        mm_start_code=0x555555554000, mm_end_code=0x5555555552D5, mm_start_data=0x555555557DD0,
        mm_end_data=0x555555558058, mm_start_stack=0x7FFFFFFFE540, mm_start_brk=0x555555559000,
        mm_brk=0x55555557A000, mm_arg_start=0x7FFFFFFFE8A2, mm_arg_end=0x7FFFFFFFE8DE,
        mm_env_start=0x7FFFFFFFE8DE, mm_env_end=0x7FFFFFFFEFDD, exe_file_id=1, dumpable=1)
    mm.mm_saved_auxv.extend([33, 0x7FFFF7FC1000, 6, 4096, 3, 0x555555554040, 9, 0x5555555550E0, 0, 0])
    vmas = [
        (0x555555554000, 0x555555555000, 0, 1, 1, 0x2, 0x41, -1),       # exe text, private file
        (0x555555555000, 0x555555556000, 0x1000, 1, 5, 0x2, 0x41, -1),
        (0x555555559000, 0x55555557A000, 0, 0, 3, 0x22, 0x221, -1),      # heap
        (0x7FFFF7A00000, 0x7FFFF7E00000, 0, 0, 3, 0x22, 0x201, -1),      # 4 MiB anon
        (0x7FFFF7FB0000, 0x7FFFF7FB1000, 0, 20062, 3, 0x21, 0x101, -1),  # shared anon
        (0x7FFFF7FBD000, 0x7FFFF7FC1000, 0, 0, 1, 0x22, 0x1101, -1),     # [vvar]
        (0x7FFFF7FC1000, 0x7FFFF7FC3000, 0, 0, 5, 0x22, 0x209, -1),      # [vdso]
        (0x7FFFFFFDE000, 0x7FFFFFFFF000, 0, 0, 3, 0x122, 0x203, -1),     # [stack]
        (0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, 0, 0, 4, 0x22, 0x204, -1),  # [vsyscall]
    ]
    for start, end, pgoff, shmid, prot, flags, status, fd in vmas:
        mm.vmas.add(start=start, end=end, pgoff=pgoff, shmid=shmid, prot=prot, flags=flags,
                    status=status, fd=fd, madv=0, fdflags=0)
    return mm


def pagemap_entries():
    head = _cls("pagemap_pb2.pagemap_head")(pages_id=1)
    return [head,
            framing.new_pagemap_entry(0x555555555000, 1, 4),
            framing.new_pagemap_entry(0x555555559000, 33, 6),
            framing.new_pagemap_entry(0x7FFFF7A00000, 1024, 6),
            framing.new_pagemap_entry(0x7FFFFFFFD000, 2, 6)]


def _fown():
    return _cls("fown_pb2.fown_entry")(uid=0, euid=0, signum=0, pid_type=0, pid=0)


def file_entries():
    fe, reg, pipe = _cls("fdinfo_pb2.file_entry"), _cls("regfile_pb2.reg_file_entry"), _cls("pipe_pb2.pipe_entry")
    out = [fe(type=1, id=1, reg=reg(id=1, flags=0, pos=0, fown=_fown(), name="/opt/crpy/counter",
                                    size=16352, mode=0o100755, build_id=[1, 2, 3, 4, 5])),
           fe(type=1, id=2, reg=reg(id=2, flags=0o100001, pos=1234, fown=_fown(), name="/tmp/log.txt",
                                    size=1234, mode=0o100644)),
           fe(type=1, id=3, reg=reg(id=3, flags=0o100002, pos=0, fown=_fown(), name="/dev/null",
                                    mode=0o20666)),
           fe(type=2, id=4, pipe=pipe(id=4, pipe_id=2875545, flags=0, fown=_fown())),
           fe(type=1, id=5, reg=reg(id=5, flags=0o200000, pos=0, fown=_fown(), name="/", mode=0o40755)),
           fe(type=5, id=6, usk=_cls("sk_unix_pb2.unix_sk_entry")(
               id=6, ino=123456, type=1, state=1, flags=2, uflags=0, backlog=0, peer=123457, fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=212992, so_rcvbuf=212992, so_snd_tmo_sec=0,
                                                      so_snd_tmo_usec=0, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0),
               name=b"", shutdown=0)),
           fe(type=5, id=15, usk=_cls("sk_unix_pb2.unix_sk_entry")(      # a listener on a path (crpy fields)
               id=15, ino=123458, type=5, state=10, flags=0o4002, uflags=0, backlog=17, peer=0, fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=212992, so_rcvbuf=425984, so_snd_tmo_sec=7,
                                                      so_snd_tmo_usec=252000, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0,
                                                      so_passcred=True),
               name=b"/run/crpy.sock", shutdown=1,
               file_perms=_cls("sk_unix_pb2.file_perms_entry")(mode=0o140640, uid=0, gid=0),
               vfs_ino=991, vfs_dev=0x803, peek_off=-1)),
           fe(type=4, id=16, isk=_cls("sk_inet_pb2.inet_sk_entry")(      # an established TCP connection
               id=16, ino=123460, family=2, type=1, proto=6, state=1, src_port=8080, dst_port=40558,
               flags=0o4000, backlog=0, src_addr=[0x0100007F], dst_addr=[0x0100007F], fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=2626560, so_rcvbuf=131072, so_snd_tmo_sec=0,
                                                      so_snd_tmo_usec=0, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0,
                                                      so_keepalive=True, tcp_keepidle=77),
               ip_opts=_cls("sk_inet_pb2.ip_opts_entry")(freebind=False),
               crpy_tcp_opts=_cls("sk_inet_pb2.crpy_tcp_opts_entry")(nodelay=True, congestion="cubic"))),
           fe(type=4, id=17, isk=_cls("sk_inet_pb2.inet_sk_entry")(      # an IPv6 listener
               id=17, ino=123461, family=10, type=1, proto=6, state=10, src_port=443, dst_port=0,
               flags=2, backlog=128, src_addr=[0, 0, 0, 0x01000000], dst_addr=[0, 0, 0, 0], fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=16384, so_rcvbuf=131072, so_snd_tmo_sec=0,
                                                      so_snd_tmo_usec=0, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0,
                                                      reuseaddr=True), v6only=True)),
           fe(type=6, id=7, efd=_cls("eventfd_pb2.eventfd_file_entry")(id=7, flags=2, fown=_fown(), counter=5,
                                                                        semaphore=True)),
           fe(type=11, id=8, tty=_cls("tty_pb2.tty_file_entry")(id=8, tty_info_id=1, flags=2, fown=_fown())),
           fe(type=17, id=9, tfd=_cls("timerfd_pb2.timerfd_entry")(
               id=9, flags=0o4002, fown=_fown(), clockid=1, ticks=3, settime_flags=1, vsec=2, vnsec=500000000,
               isec=3600, insec=0)),
           fe(type=9, id=10, sgfd=_cls("signalfd_pb2.signalfd_entry")(id=10, flags=0o4002, fown=_fown(),
                                                                     sigmask=(1 << 9) | (1 << 35))),
           fe(type=7, id=11, epfd=_cls("eventpoll_pb2.eventpoll_file_entry")(
               id=11, flags=2, fown=_fown(), owner=PID, tfd=[
                   _cls("eventpoll_pb2.eventpoll_tfd_entry")(id=11, tfd=7, events=0x19, data=0x1111, dev=0x10,
                                                             inode=1038, pos=0),
                   _cls("eventpoll_pb2.eventpoll_tfd_entry")(id=11, tfd=9, events=0x80000019, data=1 << 40,
                                                             dev=0xE, inode=2875545, pos=0, held_at=12),
                   _cls("eventpoll_pb2.eventpoll_tfd_entry")(id=11, tfd=10, events=0x19, data=7, dev=0xE,
                                                             inode=2875546, pos=0, held_file=4)])),
           fe(type=8, id=12, ify=_cls("fsnotify_pb2.inotify_file_entry")(
               id=12, flags=0o4000, fown=_fown(), wd=[_cls("fsnotify_pb2.inotify_wd_entry")(
                   id=12, i_ino=0x3F7E8, mask=0x100, ignored_mask=0, s_dev=0xFE00000, wd=3,
                   f_handle=_cls("fh_pb2.fh_entry")(bytes=8, type=1, handle=[0x3F7E8] + [0] * 15))])),
           fe(type=12, id=14, ffy=_cls("fsnotify_pb2.fanotify_file_entry")(
               id=14, flags=0o4000, fown=_fown(), faflags=2, evflags=0o100000, mark=[
                   _cls("fsnotify_pb2.fanotify_mark_entry")(
                       id=14, type=1, mflags=0x40, mask=0, ignored_mask=0x20, s_dev=0xFE00000,
                       ie=_cls("fsnotify_pb2.fanotify_inode_mark_entry")(
                           i_ino=0x20C448, f_handle=_cls("fh_pb2.fh_entry")(bytes=8, type=1,
                                                                           handle=[0x20C448] + [0] * 15)))])),
           fe(type=4, id=18, isk=_cls("sk_inet_pb2.inet_sk_entry")(      # a connected UDP socket
               id=18, ino=123462, family=2, type=2, proto=17, state=1, src_port=5353, dst_port=53,
               flags=0o4000, backlog=0, src_addr=[0x0100007F], dst_addr=[0x0100007F], fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=212992, so_rcvbuf=212992, so_snd_tmo_sec=0,
                                                      so_snd_tmo_usec=0, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0,
                                                      so_broadcast=True),
               ip_opts=_cls("sk_inet_pb2.ip_opts_entry")(freebind=False), shutdown=1)),
           fe(type=13, id=19, nlsk=_cls("sk_netlink_pb2.netlink_sk_entry")(      # NETLINK_ROUTE in groups 1, 3, 33
               id=19, ino=123463, protocol=0, state=0, flags=2, portid=4242, groups=[5, 1], dst_portid=0,
               dst_group=0, fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=212992, so_rcvbuf=212992, so_snd_tmo_sec=0,
                                                      so_snd_tmo_usec=0, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0))),
           fe(type=10, id=20, psk=_cls("packet_sock_pb2.packet_sock_entry")(      # bound to lo, in a fanout group
               id=20, type=3, protocol=0x88B5, flags=0, ifindex=1, fown=_fown(),
               opts=_cls("sk_opts_pb2.sk_opts_entry")(so_sndbuf=212992, so_rcvbuf=212992, so_snd_tmo_sec=0,
                                                      so_snd_tmo_usec=0, so_rcv_tmo_sec=0, so_rcv_tmo_usec=0),
               version=1, reserve=64, aux_data=True, orig_dev=False, vnet_hdr=False, loss=True, timestamp=1,
               copy_thresh=0, fanout=0x1234,
               mclist=[_cls("packet_sock_pb2.packet_mclist")(index=1, type=0, addr=bytes.fromhex("01005e0000fb"))])),
           fe(type=20, id=13, pidfd=_cls("pidfd_pb2.pidfd_entry")(id=13, ino=50531, flags=0o4002, nspid=PID + 1,
                                                                fown=_fown()))]
    return out


def fdinfo_entries():
    fd = _cls("fdinfo_pb2.fdinfo_entry")
    return [fd(id=3, flags=0, type=1, fd=0), fd(id=2, flags=0, type=1, fd=1),
            fd(id=2, flags=0, type=1, fd=2), fd(id=4, flags=1, type=2, fd=5)]


def samples():
    """{kind: entries} for every framed kind crpy writes; payload kinds map to (entry, data) pairs."""
    pde = _cls("pipe_data_pb2.pipe_data_entry")
    ts = _cls("timens_pb2.timespec")
    return {
        "inventory": [_cls("inventory_pb2.inventory_entry")(
            img_version=magic.IMG_VERSION, fdinfo_per_id=True, root_ids=kobj_ids(), ns_per_id=True,
            root_cg_set=1, lsmtype=0, network_lock_method=0, dump_criu_run_id="crpy-test")],
        "pstree": [_cls("pstree_pb2.pstree_entry")(pid=PID, ppid=0, pgid=PID, sid=PID, threads=[PID]),
                   _cls("pstree_pb2.pstree_entry")(pid=PID + 1, ppid=PID, pgid=PID + 1, sid=PID,
                                                    threads=[PID + 1])],
        "core": [core_entry()],
        "ids": [kobj_ids()],
        "mm": [mm_entry()],
        "pagemap": pagemap_entries(),
        "pagemap_shmem": [_cls("pagemap_pb2.pagemap_head")(pages_id=2), framing.new_pagemap_entry(0, 1, 4)],
        "files": file_entries(),
        "fdinfo": fdinfo_entries(),
        "fs": [_cls("fs_pb2.fs_entry")(cwd_id=5, root_id=5, umask=0o22)],
        "pipes_data": [(pde(pipe_id=2875545, bytes=0, size=65536), b"in flight")],
        "fifo_data": [(pde(pipe_id=7, bytes=0, size=4096), b"\x00\x01\x02" * 100)],
        "memfd_inode": [_cls("memfd_pb2.memfd_inode_entry")(name="/dev/zero", uid=0, gid=0, size=4096,
                                                             shmid=20062, seals=1, inode_id=1, mode=0o100777)],
        "seccomp": [_cls("seccomp_pb2.seccomp_entry")()],
        "cpuinfo": [cpuinfo_entry()],
        "timens": [_cls("timens_pb2.timens_entry")(monotonic=ts(tv_sec=2937, tv_nsec=92620341),
                                                    boottime=ts(tv_sec=2937, tv_nsec=92620381))],
        "stats": [_cls("stats_pb2.stats_entry")(dump=_cls("stats_pb2.dump_stats_entry")(
            freezing_time=123, frozen_time=7615, memdump_time=2892, memwrite_time=2072, pages_scanned=1066,
            pages_skipped_parent=0, pages_written=1052, pages_lazy=0))],
        "remap_fpath": [_cls("remap_file_path_pb2.remap_file_path_entry")(orig_id=2, remap_id=9, remap_type=1)],
        "file_locks": [_cls("file_lock_pb2.file_lock_entry")(flag=2, type=1, pid=42, fd=3, start=0, len=0),
                       _cls("file_lock_pb2.file_lock_entry")(flag=1, type=0, pid=42, fd=4, start=10, len=10)],
        "tty_info": [tty_info()],
        "ghost_file": ghost_chunks(),
        "tty_data": [_cls("tty_pb2.tty_data_entry")(tty_id=1, data=b"typed ahead\n")],
        "sk_queues": [(_cls("sk_packet_pb2.sk_packet_entry")(id_for=6, length=0), b"hello, peer"),
                      (_cls("sk_packet_pb2.sk_packet_entry")(
                          id_for=6, length=0, scm=[_cls("sk_packet_pb2.scm_entry")(type=1, rights=[3])]), b"fd"),
                      (_cls("sk_packet_pb2.sk_packet_entry")(id_for=15, length=0), b"")],    # a 0-byte datagram
        "tcp_stream": [(_cls("tcp_stream_pb2.tcp_stream_entry")(
            inq_len=5, inq_seq=0x1234, outq_len=7, outq_seq=0xFFFFFFF0, opt_mask=7, snd_wscale=7, mss_clamp=65483,
            rcv_wscale=7, timestamp=123456, cork=False, nodelay=True, unsq_len=3, snd_wl1=0x1230, snd_wnd=65536,
            max_window=65536, rcv_wnd=65536, rcv_wup=0x1234), b"hello" + b"pending")],
        "digests": [_cls("crpy_digest_pb2.digest_head")(algo="xxh3_64", chunk_size=1 << 20, body=0x1234),
                    _cls("crpy_digest_pb2.image_digest_entry")(name="pages-1.img", size=3 << 20,
                                                                chunks=[1, 2 ** 64 - 1, 3])],
    }


def ghost_chunks():
    """An unlinked sparse file saved in chunks: (head, b""), then (chunk, data) pairs."""
    head = _cls("ghost_file_pb2.ghost_file_entry")(uid=0, gid=0, mode=0o100600, dev=0x803, ino=77, size=12288,
                                                   chunks=True)
    chunk = _cls("ghost_file_pb2.ghost_chunk_entry")
    return [(head, b""), (chunk(len=0, off=0), b"head of file"), (chunk(len=0, off=8192), b"\xff" * 4096)]


def tty_info():
    tty = _cls("tty_pb2.tty_info_entry")(id=1, type=1, locked=False, exclusive=False, packet_mode=False,
                                          sid=PID, pgrp=PID, rdev=0x8800)
    tty.termios.CopyFrom(_cls("tty_pb2.termios_entry")(c_iflag=0x500, c_oflag=0x5, c_cflag=0xBF, c_lflag=0x8A3B,
                                                        c_line=0, c_ispeed=15, c_ospeed=15, c_cc=list(range(19))))
    tty.winsize.CopyFrom(_cls("tty_pb2.winsize_entry")(ws_row=24, ws_col=80, ws_xpixel=0, ws_ypixel=0))
    tty.pty.index = 3
    return tty


PER_TASK = ("core", "ids", "mm", "pagemap", "fs")
CRPY_ONLY = ("digests",)           # crpy's own images: criu and crit never read them


def write_all(directory):
    """Write every sample image into directory, as one consistent dump of a two-task tree
    (pstree.img) whose tasks share the files table 1; returns {kind: path} (the parent's)."""
    idents = {"stats": "dump", "pagemap_shmem": 20062, "ghost_file": 0x2A, "fdinfo": 1, "timens": 0}
    paths = {}
    for kind, entries in samples().items():
        k = magic.kind(kind)
        ident = idents.get(kind, PID) if "{id" in k.pattern else None
        paths[kind] = _write(framing.image_path(directory, kind, ident), kind, entries)
        if kind in PER_TASK:
            if kind == "core":
                entries = [core_entry()]
                entries[0].tc.comm = entries[0].thread_core.comm = "child"
            _write(framing.image_path(directory, kind, PID + 1), kind, entries)
    return paths


def _write(path, kind, entries):
    if magic.kind(kind).payload:
        framing.write_payload_image(path, kind, entries)
    else:
        framing.write_image(path, kind, entries)
    return path


def test_every_framed_kind_has_a_sample():
    framed = {name for name, k in magic.KINDS.items() if k.magic is not None}
    assert framed == set(samples())


def test_samples_serialize():
    for kind, entries in samples().items():
        for entry in entries:
            msg = entry[0] if isinstance(entry, tuple) else entry
            assert msg.IsInitialized(), (kind, msg.FindInitializationErrors())


# ------------------------------------------------------------------- comparing with crit 3.17

# Fields CRIU 4.x (and crpy) write that Debian's crit 3.17 does not know: it drops them.
NEWER_THAN_CRIT = {"nr_pages", "compat_nr_pages", "cap_amb", "no_new_privs", "cg_set", "cet", "mode",
                   "plugins_entry", "dump_criu_run_id", "stop_signo", "membarrier_registration_mask",
                   "payload_len", "xsave_components",
                   "semaphore", "held_at", "held_file", "owner",  # crpy-only fields (>= 1000)
                   "pidfd",  # CRIU 4.x's pidfd entry: crit 3.17 knows neither it nor its fd type (20)
                   "vfs_ino", "vfs_dev", "peek_off",     # crpy-only fields (>= 1000) of unix_sk_entry
                   "crpy_tcp_opts"}                      # crpy-only field (>= 1000) of inet_sk_entry


@functools.lru_cache(maxsize=None)
def _crit_decode_cached(path):
    return crit_decode_uncached(path)


def crit_decode(path):
    """What `crit decode -i path` prints, parsed (once per path: images are not rewritten)."""
    return copy.deepcopy(_crit_decode_cached(str(path)))


def crit_decode_uncached(path):
    import json
    import shutil
    import subprocess

    crit = shutil.which("crit")
    assert crit, "crit (Debian package criu) is not installed: run tools/install-deps.sh"
    res = subprocess.run([crit, "decode", "-i", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"crit decode {path} failed: {res.stderr.strip()}"
    return json.loads(res.stdout)


def assert_matches_crit(crit_doc, ours, where="", magic_name=None):
    """Every value crit printed equals ours; ours has extra keys only for fields crit 3.17 lacks."""
    import base64

    if isinstance(crit_doc, dict):
        assert isinstance(ours, dict), where
        for key, value in crit_doc.items():
            if key == "extra" and isinstance(value, dict):   # tcp-stream: both queues, base64
                assert sum(len(base64.b64decode(q)) for q in value.values()) == ours["payload_len"], where
                continue
            if key == "extra":  # crit's base64 of a payload (pipes-data); ours gives its length
                assert len(base64.b64decode(value)) == ours["payload_len"], where
                continue
            mine_key = key
            if magic_name == "PAGEMAP" and key == "nr_pages":  # crit 3.17 names field 2 nr_pages
                mine_key = "compat_nr_pages"
            assert mine_key in ours, f"{where}.{key}: crit has it, crpy does not"
            assert_matches_crit(value, ours[mine_key], f"{where}.{key}", magic_name)
        extra = set(ours) - set(crit_doc) - ({"compat_nr_pages"} if magic_name == "PAGEMAP" else set())
        if "pidfd" in extra:
            extra.discard("type")      # crit 3.17 drops the fd type it does not know (PIDFD)
        assert extra <= NEWER_THAN_CRIT, f"{where}: only crpy shows {extra - NEWER_THAN_CRIT}"
    elif isinstance(crit_doc, list):
        assert isinstance(ours, list) and len(ours) == len(crit_doc), where
        for i, (a, b) in enumerate(zip(crit_doc, ours)):
            assert_matches_crit(a, b, f"{where}[{i}]", magic_name)
    elif isinstance(crit_doc, str) and isinstance(ours, str) and crit_doc != ours:
        # bytes fields: crit uses base64 with line breaks, crpy without
        assert base64.b64decode(crit_doc) == base64.b64decode(ours), where
    else:
        assert crit_doc == ours, f"{where}: crit {crit_doc!r} != crpy {ours!r}"
