"""timerfd: dump and restore of the clock, the time left, the interval, the ticks not yet read
and the settime flags (TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET).

As CRIU does, one files.img entry of type TIMERFD (timerfd_entry) per open file, filled from
/proc/PID/fdinfo ("clockid", "ticks", "settime flags" in octal) and timerfd_gettime on crpy's
own duplicate of the fd (time left, interval: see _gettime).  The time the task stood frozen before the read is given back on clocks
that run on meanwhile (as for POSIX timers, crpy.dump.timers), so an armed timer still fires
after the running time it had left; restore arms it relative to the restore's own clock.
TFD_TIMER_ABSTIME timers are armed again at "now + time left" with the flag, as CRIU does.
Ticks not yet read are put back with the TFD_IOC_SET_TICKS ioctl (arming resets them to 0).
"""

import re
import time

from crpy.errors import RestoreError, UnsupportedResource

O_CLOEXEC = 0o2000000
O_NONBLOCK = 0o4000
TFD_TIMER_ABSTIME = 1
TFD_IOC_SET_TICKS = 0x40085400          # _IOW('T', 0, __u64)
_NR_TIMERFD_CREATE, _NR_TIMERFD_SETTIME, _NR_TIMERFD_GETTIME = 283, 286, 287
_RUNS_WHILE_FROZEN = {0, 1, 7, 8, 9}    # REALTIME, MONOTONIC, BOOTTIME and their ALARM forms
_READABLE_CLOCK = {8: 0, 9: 7}        # the ALARM clocks read as REALTIME / BOOTTIME
_PAIR = re.compile(r"\(\s*(-?\d+),\s*(-?\d+)\s*\)")


def parse(raw):
    """(clockid, ticks, settime_flags, value_ns, interval_ns) from a timerfd's fdinfo fields."""
    def pair_ns(text):
        m = _PAIR.search(text)
        return int(m.group(1)) * 10**9 + int(m.group(2))

    return (int(raw["clockid"]), int(raw["ticks"]), int(raw["settime flags"], 8),
            pair_ns(raw["it_value"]), pair_ns(raw["it_interval"]))


def check(fdfacts):
    if not {"clockid", "ticks", "settime flags", "it_value", "it_interval"} <= set(fdfacts.info.raw):
        raise UnsupportedResource(fdfacts.pid, "timerfd", fdfacts.fd, fdfacts.target,
                                  "this kernel's fdinfo does not show the timer's state")


def dump_fd(fdfacts, file_id, files):
    from crpy import resources
    from crpy.images.pb import fdinfo_pb2, timerfd_pb2
    from crpy.kernel import proc
    from crpy.resources import taskfd
    from crpy.resources.regfile import fown

    with taskfd.grabbed(fdfacts.pid, fdfacts.fd) as fd:
        value, interval = _gettime(fd)                # forwards an expired periodic timer, as a read
        clockid, ticks, settime_flags, _, _ = parse(proc.fdinfo(fdfacts.pid, fdfacts.fd).raw)
    if value and clockid in _RUNS_WHILE_FROZEN and resources.frozen_since():
        value += max(int((time.monotonic() - resources.frozen_since()) * 1e9), 0)
    e = timerfd_pb2.timerfd_entry(id=file_id, flags=fdfacts.info.flags & ~O_CLOEXEC, fown=fown(),
                                  clockid=clockid, ticks=ticks, settime_flags=settime_flags,
                                  vsec=value // 10**9, vnsec=value % 10**9,
                                  isec=interval // 10**9, insec=interval % 10**9)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.TIMERFD, id=file_id, tfd=e)


def _gettime(fd):
    """(time left, interval) in ns.  fdinfo alone says 0 left for a periodic timer that expired
    with its tick not read yet (the kernel moves it on only when it is read or asked, and then
    counts the ticks missed meanwhile): timerfd_gettime asks."""
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import sys_call

    its = ffi.new("long[4]")
    sys_call(_NR_TIMERFD_GETTIME, fd, its, what="timerfd_gettime")
    return its[2] * 10**9 + its[3], its[0] * 10**9 + its[1]


def restore_fd(entry, ctx):
    from crpy.kernel._sys import ffi
    from crpy.kernel.syscalls import ioctl, sys_call

    e = entry.tfd
    what = f"timerfd on clock {e.clockid}"
    fd = sys_call(_NR_TIMERFD_CREATE, e.clockid, O_CLOEXEC | (e.flags & O_NONBLOCK), what=what)
    its = ffi.new("long[4]", [e.isec, e.insec, e.vsec, e.vnsec])   # struct itimerspec
    flags = e.settime_flags
    if flags & TFD_TIMER_ABSTIME and (e.vsec or e.vnsec):
        now = time.clock_gettime_ns(_READABLE_CLOCK.get(e.clockid, e.clockid))
        deadline = now + e.vsec * 10**9 + e.vnsec
        its[2], its[3] = deadline // 10**9, deadline % 10**9
    try:
        if e.vsec or e.vnsec or flags:
            sys_call(_NR_TIMERFD_SETTIME, fd, flags, its, 0, what=f"arming the {what}")
        if e.ticks:
            ioctl(fd, TFD_IOC_SET_TICKS, ffi.new("unsigned long long *", e.ticks),
                  what=f"TFD_IOC_SET_TICKS on the {what}")
    except Exception as err:
        import os

        os.close(fd)
        raise RestoreError(f"cannot restore a {what}: {err}") from None
    return fd
