"""Kinds of kernel objects a task can hold, one module per kind, each owning dump AND restore.

The registry maps a kind name to its module, imported only when that kind is met.  classify()
names the kind of an open fd from its /proc link and stat; kinds without a module are refused
(UnsupportedResource) before the parasite ever touches the task.
"""

import importlib
import os
import stat as _stat

# kind -> module implementing it (dump_fd / restore side)
_MODULES = {
    "reg": "crpy.resources.regfile",     # regular files, directories, character devices (/dev/null)
}

# Character devices handled by their own (future) kinds, not as plain files.
_TTY_MAJORS = {4, 5} | set(range(136, 144))

_ANON_KINDS = {"[eventfd]": "eventfd", "[eventpoll]": "eventpoll", "[signalfd]": "signalfd",
               "[timerfd]": "timerfd", "inotify": "inotify", "[fanotify]": "fanotify",
               "[pidfd]": "pidfd", "[userfaultfd]": "userfaultfd", "bpf-map": "bpf-map",
               "[io_uring]": "io_uring"}


def classify(target, st):
    """Kind of an open file: 'reg' for what the regfile module handles, otherwise a descriptive
    name ('pipe', 'socket', 'eventfd', 'tty', 'unlinked file', ...) of something unsupported."""
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("anon_inode:"):
        name = target[len("anon_inode:"):]
        return _ANON_KINDS.get(name, "anon inode " + name)
    if target.startswith("/memfd:"):
        return "memfd"
    if target.endswith(" (deleted)"):
        return "unlinked file"
    mode = st.st_mode
    if _stat.S_ISFIFO(mode):
        return "fifo"
    if _stat.S_ISCHR(mode):
        return "tty" if os.major(st.st_rdev) in _TTY_MAJORS else "reg"
    if _stat.S_ISREG(mode) or _stat.S_ISDIR(mode):
        return "reg"
    if _stat.S_ISBLK(mode):
        return "block device"
    return "unknown"


def supported(kind):
    return kind in _MODULES


def module(kind):
    """The module that dumps and restores `kind` (imported on first use)."""
    return importlib.import_module(_MODULES[kind])
