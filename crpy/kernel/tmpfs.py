"""Whether a directory is on tmpfs, and whether that tmpfs gives its files huge pages.

Page images written into a tmpfs mounted with huge=never (the default, /dev/shm's) cost the
kernel one 4 KiB page allocation, charge and page-cache insertion per page: the page step of a
dump then runs at about 2 GiB/s on these machines, against 5-6 GiB/s into a tmpfs mounted with
huge=within_size (bench/tmpfs_huge.py).  The dump says so in its -v log.

    huge_mode(path)   "never", "always", "within_size", "advise" for a tmpfs (the global
                      shmem_enabled "force"/"deny" applied), None when path is not on tmpfs
"""

import os

_SHMEM_ENABLED = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"


def huge_mode(path):
    mount = _mount_of(os.path.realpath(path))
    if mount is None or mount[0] != "tmpfs":
        return None
    forced = _global_override()
    if forced is not None:
        return forced
    for opt in mount[1].split(","):
        if opt.startswith("huge="):
            return opt[5:]
    return "never"


def _mount_of(path):
    """(fstype, super options) of the mount `path` (a real path) is on, or None: of the mounts
    of its device (st_dev: mountinfo's major:minor), the last at the longest mount point above
    it (a later mount hides an earlier one; a bind mount of another directory has its own)."""
    try:
        dev = os.stat(path).st_dev
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    dev = f"{os.major(dev)}:{os.minor(dev)}"
    best, best_len = None, -1
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        point = fields[4].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and fields[2] == dev and len(point) >= best_len and len(fields) > sep + 3:
            best, best_len = (fields[sep + 1], fields[sep + 3]), len(point)
    return best


def _global_override():
    """"always" when the system forces huge pages on every tmpfs, "never" when it denies them."""
    try:
        with open(_SHMEM_ENABLED) as f:
            chosen = f.read().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        return None
    return {"force": "always", "deny": "never"}.get(chosen)
