"""Dump: the POSIX timers of a task (timer_create).  /proc/PID/timers tells each timer's id,
clock, signal, sigev value and how it notifies; the remaining time, the interval and the overrun
count only the task can read (timer_gettime / timer_getoverrun, asked through the parasite).
The remaining time is saved as the task would see it: the time it spent frozen before the timers
were read is given back (discount_frozen_time), and the time it then spends frozen until its
restore does not count as elapsed either."""

import time

from crpy.errors import UnsupportedResource

SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
_NOTIFY = {"signal": SIGEV_SIGNAL, "none": SIGEV_NONE, "thread": SIGEV_THREAD}


def parse_proc_timers(text):
    """[{id, signo, sival, notify, target, clock}] from the text of /proc/PID/timers."""
    timers, cur = [], None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "ID":
            cur = {"id": int(value)}
            timers.append(cur)
        elif key == "signal":
            signo, _, sival = value.partition("/")
            cur["signo"], cur["sival"] = int(signo), int(sival or "0", 16)
        elif key == "notify":
            kind, _, who = value.partition("/")
            scope, _, target = who.partition(".")
            cur["notify"] = _NOTIFY.get(kind, SIGEV_SIGNAL) | (SIGEV_THREAD_ID if scope == "tid" else 0)
            cur["target"] = int(target or "0")
        elif key == "ClockID":
            cur["clock"] = int(value)
    return timers


def dump_posix_timers(pid, parasite, timers=None):
    """posix_timer_entry of every POSIX timer of the task.  timers: its read_timers(pid), read
    earlier (the parasite may have been asked their times already: Parasite.ask_timers)."""
    from crpy.images.pb import timer_pb2

    if timers is None:
        timers = read_timers(pid)
    if not timers:
        return []
    times = parasite.posix_timers([t["id"] for t in timers])
    out = []
    for t in timers:
        interval, value, overrun = times[t["id"]]
        e = timer_pb2.posix_timer_entry(
            it_id=t["id"], clock_id=t["clock"], si_signo=t["signo"], it_sigev_notify=t["notify"],
            sival_ptr=t["sival"], overrun=min(overrun, (1 << 31) - 1),
            isec=interval // 10**9, insec=interval % 10**9, vsec=value // 10**9, vnsec=value % 10**9)
        if t["notify"] & SIGEV_THREAD_ID:
            e.notify_thread_id = t["target"]
        out.append(e)
    return out


def read_timers(pid):
    """The task's POSIX timers as /proc/PID/timers tells them (parse_proc_timers), refused
    where crpy cannot save them."""
    try:
        with open(f"/proc/{pid}/timers") as f:
            timers = parse_proc_timers(f.read())
    except FileNotFoundError:
        return []
    for t in timers:
        if t["clock"] < 0 or t["clock"] > 11:
            raise UnsupportedResource(pid, "POSIX timer", target=f"(id {t['id']} on clock {t['clock']})",
                                      hint="timers on CPU-time clocks of other tasks are not supported")
    return timers


# Clocks that run on while a task is frozen (CPU-time clocks stand still with it).
_WALL_CLOCKS = {0, 1, 7, 8, 9, 11}   # REALTIME, MONOTONIC, BOOTTIME, their ALARM forms, TAI


def discount_frozen_time(misc, frozen_at, read_at=None):
    """Give back to the itimer and the POSIX timers on wall clocks the time the task stood frozen
    between its seize and the reading of its timers (misc, as the parasite read them at read_at,
    time.monotonic(); None: just now): a timer armed for 2.5 s must still fire after 2.5 s of the
    task's own running time."""
    lost_ns = max(int(((time.monotonic() if read_at is None else read_at) - frozen_at) * 1e9), 0)
    itimers = misc.get("itimers")
    if itimers and itimers[0] and (itimers[0][2] or itimers[0][3]):   # ITIMER_REAL armed
        isec, iusec, vsec, vusec = itimers[0]
        total_us = vsec * 10**6 + vusec + lost_ns // 1000
        itimers[0] = (isec, iusec, total_us // 10**6, total_us % 10**6)
    for t in misc.get("posix_timers") or []:
        if t.clock_id in _WALL_CLOCKS and (t.vsec or t.vnsec):
            total_ns = t.vsec * 10**9 + t.vnsec + lost_ns
            t.vsec, t.vnsec = total_ns // 10**9, total_ns % 10**9
