"""Dump: the POSIX timers of a task (timer_create).  /proc/PID/timers tells each timer's id,
clock, signal, sigev value and how it notifies; the remaining time, the interval and the overrun
count only the task can read (timer_gettime / timer_getoverrun, asked through the parasite).
The remaining time is saved as it stands at the dump: the time the task then spends frozen
does not count as elapsed."""

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


def dump_posix_timers(pid, parasite):
    """posix_timer_entry of every POSIX timer of the task."""
    from crpy.images.pb import timer_pb2

    try:
        with open(f"/proc/{pid}/timers") as f:
            timers = parse_proc_timers(f.read())
    except FileNotFoundError:
        return []
    if not timers:
        return []
    for t in timers:
        if t["clock"] < 0 or t["clock"] > 11:
            raise UnsupportedResource(pid, "POSIX timer", target=f"(id {t['id']} on clock {t['clock']})",
                                      hint="timers on CPU-time clocks of other tasks are not supported")
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
