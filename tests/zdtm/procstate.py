"""What the outside world can see of a task, to show that a failed or killed dump left it untouched.

snapshot(pid) reads /proc/PID/maps, the fd table (target, pos, flags) and the signal, tracer and
state fields of /proc/PID/status; differences(before, after) lists what changed, in words.
vmas(pid) is what a restore must give back of every VMA: its maps line but for device and inode
(a restore makes new shmem and hugetlbfs inodes), its smaps VmFlags and page size.
"""

import os
import re
import time

STATUS_FIELDS = ("SigBlk", "SigPnd", "ShdPnd", "SigIgn", "SigCgt", "TracerPid", "Umask", "NoNewPrivs",
                 "Seccomp")


def _status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _fds(pid):
    fds = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            with open(f"/proc/{pid}/fdinfo/{name}") as f:
                info = dict(line.split(":", 1) for line in f if line.startswith(("pos", "flags")))
        except FileNotFoundError:   # closed while we looked (a parasite curing itself): not there
            continue
        fds[int(name)] = (target, info.get("pos", "").strip(), info.get("flags", "").strip())
    return fds


def snapshot(pid):
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    status = _status(pid)
    return {
        "maps": maps,
        "fds": _fds(pid),
        "status": {k: status.get(k) for k in STATUS_FIELDS},
        "state": status.get("State", "?")[:1],
    }


def parasite_leftovers(maps):
    """Anonymous rwx mappings: what a parasite (or its injected mmap) would leave behind."""
    out = []
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[1].startswith("rwx") and (len(parts) == 5 or parts[5] == ""):
            out.append(line)
    return out


# SIGALRM, SIGVTALRM, SIGPROF: a running task's own interval timers raise them at any moment, and
# the task takes them at its pace, so whether one is pending at a snapshot says nothing of crpy.
_TIMER_SIGNALS = (1 << 13) | (1 << 25) | (1 << 26)


def _comparable(key, value):
    if key in ("SigPnd", "ShdPnd") and value:
        return int(value, 16) & ~_TIMER_SIGNALS
    return value


def differences(before, after):
    diffs = []
    if before["maps"] != after["maps"]:
        old, new = set(before["maps"].splitlines()), set(after["maps"].splitlines())
        diffs.append(f"maps changed: gone {sorted(old - new)}, new {sorted(new - old)}")
    if before["fds"] != after["fds"]:
        diffs.append(f"fds changed: {before['fds']} -> {after['fds']}")
    for key, value in before["status"].items():
        if _comparable(key, after["status"].get(key)) != _comparable(key, value):
            diffs.append(f"{key} changed: {value} -> {after['status'].get(key)}")
    if after["status"].get("TracerPid") != "0":
        diffs.append(f"still traced by {after['status'].get('TracerPid')}")
    if after["state"] in ("t", "T", "Z", "X"):
        diffs.append(f"state is {after['state']}")
    leftovers = parasite_leftovers(after["maps"])
    if leftovers:
        diffs.append(f"anonymous rwx mappings left: {leftovers}")
    return diffs


SETTLE_BACK = 10.0   # seconds a task crpy has left running gets to look as before again


def poll_differences(fn, timeout=SETTLE_BACK):
    """fn()'s list of differences, polled until it is [] or `timeout` seconds have passed (then
    the last list): what a task settles into is read again, never judged from one look."""
    deadline = time.monotonic() + timeout
    while True:
        diffs = fn()
        if not diffs or time.monotonic() >= deadline:
            return diffs
        time.sleep(0.02)


def settled_differences(pid, before, timeout=SETTLE_BACK):
    """differences(before, snapshot(pid)) once pid has had `timeout` seconds to settle ([] as
    soon as there are none).  A task crpy has just detached runs back into its wait: until it
    is there again its state is R, its SigBlk may be its real mask instead of its sigsuspend()'s,
    and a test that reads /proc may hold a descriptor for a moment."""
    return poll_differences(lambda: differences(before, snapshot(pid)), timeout)


# An O_TMPFILE file shows as DIR/#INODE: a restore makes a new inode, so its number cannot be kept.
_TMPFILE_NAME = re.compile(r"/#\d+( \(deleted\))?$")


def vmas(pid):
    """[(maps line without device and inode, sorted VmFlags, KernelPageSize)] of the task, in
    address order; [] for a task that has no memory (a zombie) or is gone."""
    out = []
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return out
    line = size = None
    for ln in text.splitlines():
        head = ln.split(None, 1)[0] if ln else ""
        if "-" in head and not ln[0].isupper():
            parts = ln.split(None, 5)
            line = _TMPFILE_NAME.sub(r"/#INODE\1", " ".join(parts[:3] + parts[5:]))
        elif ln.startswith("KernelPageSize:"):
            size = ln.split(":", 1)[1].strip()
        elif ln.startswith("VmFlags:"):
            out.append((line, " ".join(sorted(ln[8:].split())), size))
    return out


def vma_differences(before, after):
    """In words, how the VMAs of a restored task differ from those before its dump."""
    old, new = set(before), set(after)
    if old == new:
        return []
    return [f"VMAs differ: before only {sorted(old - new)}, after only {sorted(new - old)}"]
