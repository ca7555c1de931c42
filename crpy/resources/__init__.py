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
    "reg": "crpy.resources.regfile",     # regular files, directories, character devices (/dev/null), symlinks (O_PATH)
    "ghost": "crpy.resources.ghost",     # open files unlinked since (contents go into the images)
    "pipe": "crpy.resources.pipes",      # either end of a pipe, with its bytes in flight
    "fifo": "crpy.resources.fifo",       # named pipes, with their bytes in flight
    "tty": "crpy.resources.tty",         # the task's terminal, with --shell-job only
    "pty": "crpy.resources.pty",         # pseudo-terminal pairs held inside the tree
    "ctty": "crpy.resources.ctty",       # /dev/tty on a controlling terminal that is a pty of the tree
    "memfd": "crpy.resources.memfd",     # memfd_create files, with their contents and seals
    "ns": "crpy.resources.nsfs",         # /proc/PID/ns/* files of crpy's own namespaces
    "eventfd": "crpy.resources.eventfd",  # eventfd counter and flags
    "timerfd": "crpy.resources.timerfd",  # timerfd clock, time left, interval, ticks not yet read
    "signalfd": "crpy.resources.signalfd",  # signalfd mask and flags
    "eventpoll": "crpy.resources.eventpoll",  # epoll sets with every registration
    "inotify": "crpy.resources.inotify",  # inotify watches, by file handle
    "pidfd": "crpy.resources.pidfd",     # pidfds of tasks of the tree
    "fanotify": "crpy.resources.fanotify",  # fanotify groups with their inode marks
    "unixsk": "crpy.resources.unix_socket",  # unix sockets: pairs, bound, listening, with queued data
    "inetsk": "crpy.resources.inet_socket",  # inet sockets: TCP (inet_tcp), UDP, UDP-Lite, raw, ping (inet_udp)
    "netlinksk": "crpy.resources.netlink_socket",  # netlink sockets: portid, groups, peer
    "packetsk": "crpy.resources.packet_socket",  # packet sockets: interface, version, fanout, multicast list
}

# kind -> fd_types name of its files.img / fdinfo entries
_FD_TYPES = {"reg": "REG", "ghost": "REG", "pipe": "PIPE", "fifo": "FIFO", "tty": "TTY", "pty": "TTY", "ctty": "TTY",
             "memfd": "MEMFD", "ns": "NS", "eventfd": "EVENTFD", "timerfd": "TIMERFD", "signalfd": "SIGNALFD",
             "eventpoll": "EVENTPOLL", "inotify": "INOTIFY", "pidfd": "PIDFD", "fanotify": "FANOTIFY",
             "unixsk": "UNIXSK", "inetsk": "INETSK", "netlinksk": "NETLINKSK", "packetsk": "PACKETSK"}

# Character devices handled by their own (future) kinds, not as plain files.
_TTY_MAJORS = {4, 5} | set(range(136, 144))

_ANON_KINDS = {"[eventfd]": "eventfd", "[eventpoll]": "eventpoll", "[signalfd]": "signalfd",
               "[timerfd]": "timerfd", "inotify": "inotify", "[fanotify]": "fanotify",
               "[pidfd]": "pidfd", "[userfaultfd]": "userfaultfd", "bpf-map": "bpf map",
               "[io_uring]": "io_uring", "[perf_event]": "perf event", "bpf-prog": "bpf program",
               "bpf_link": "bpf link"}


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
    if not target.startswith("/"):
        from crpy.resources import nsfs

        if nsfs.is_ns_target(target):
            return nsfs.classify(target, st)
    if target.startswith("/memfd:"):
        from crpy.resources import memfd

        return "memfd" if memfd.on_shmem(st) else "hugetlb memfd"
    mode = st.st_mode
    if target.endswith(" (deleted)"):
        return _unlinked_kind(st)
    if _stat.S_ISFIFO(mode):
        return "fifo"
    if _stat.S_ISCHR(mode):
        return "tty" if os.major(st.st_rdev) in _TTY_MAJORS else "reg"
    if _stat.S_ISREG(mode) or _stat.S_ISDIR(mode):
        return "reg"
    if _stat.S_ISLNK(mode):                  # an O_PATH|O_NOFOLLOW fd on the symlink itself
        return "reg"
    if _stat.S_ISBLK(mode):
        return "block device"
    return "unknown"


def _unlinked_kind(st):
    """Kind of an open file unlinked since: files, directories and character devices come back
    as ghosts (crpy.resources.ghost), so do symlinks (held by O_PATH fds), FIFOs as FIFOs
    through a ghost."""
    mode = st.st_mode
    if _stat.S_ISREG(mode) or _stat.S_ISDIR(mode) or _stat.S_ISLNK(mode):
        return "ghost"
    if _stat.S_ISFIFO(mode):
        return "fifo"
    if _stat.S_ISCHR(mode) and os.major(st.st_rdev) not in _TTY_MAJORS:
        return "ghost"
    return "unlinked file"


def supported(kind):
    return kind in _MODULES


def check_fd(fdfacts):
    """Let the kind's module refuse an fd before the task is touched (its optional check())."""
    mod = module(fdfacts.kind)
    if hasattr(mod, "check"):
        mod.check(fdfacts)


def after_placed(kinds, fds):
    """Once every fd of a task is at its number: the kinds that link fds to each other (epoll
    registrations) finish their work (their optional after_placed(fds), fds: {fd: file_entry})."""
    for kind in kinds:
        mod = module(kind)
        if hasattr(mod, "after_placed"):
            mod.after_placed(fds)


def extra_users(files):
    """(pid, file id) pairs of files a task needs besides its own fds (the target of an epoll
    registration that another task holds): crpy.resources.shared makes them once for the tree.
    `files`: the files.img entries by id."""
    from crpy.resources.fdtable import kind_of_entry

    for entry in files.values():
        kind = kind_of_entry(entry)
        mod = module(kind) if supported(kind) else None
        if hasattr(mod, "extra_users"):
            yield from mod.extra_users(entry)


def fd_type(kind):
    """fd_types name (REG, PIPE, FIFO) of the images entries of a supported kind."""
    return _FD_TYPES[kind]


DEFAULT_GHOST_LIMIT = 1 << 20        # criu's default --ghost-limit
_policy = {"file_locks": False, "link_remap": False, "shell_job": False, "ghost_limit": DEFAULT_GHOST_LIMIT,
           "tcp_established": False, "skip_in_flight": False, "tcp_close": False}


def configure_dump(file_locks=False, link_remap=False, shell_job=False, ghost_limit=DEFAULT_GHOST_LIMIT,
                   tcp_established=False, skip_in_flight=False, tcp_close=False):
    """criu's --file-locks / --link-remap / --shell-job / --ghost-limit / --tcp-established /
    --skip-in-flight / --tcp-close for the dump that is about to run."""
    _policy.update(file_locks=file_locks, link_remap=link_remap, shell_job=shell_job, ghost_limit=ghost_limit,
                   tcp_established=tcp_established, skip_in_flight=skip_in_flight, tcp_close=tcp_close)
    fd_tables_seen.clear()
    fd_table_owners.clear()
    fd_descriptions.clear()
    tree_pids.clear()
    dump_memo.clear()


fd_tables_seen = []          # one pid per fd table this dump has met, in kcmp's order of the tables
fd_table_owners = {}         # pid -> the earlier pid whose fd table it shares
fd_descriptions = {}         # (dev, ino) -> [(pid, fd)]: one fd per distinct open description collected
tree_pids = []               # every live task of the tree being dumped (all stopped for the whole dump)
dump_memo = {}               # what a kind module found out once for the whole dump (pty masters, ttys)


_frozen_since = [0.0]


def set_dump_tree(pids):
    """The live tasks of the tree this dump has seized: a kind may look into any of them (the
    master of a pty whose slave another task holds).  Called right after the tree is seized."""
    import time

    tree_pids[:] = pids
    _frozen_since[0] = time.monotonic()


def frozen_since():
    """time.monotonic() when the tree stood frozen (timers give that time back)."""
    return _frozen_since[0]


def allowed(what):
    return _policy[what]


def setting(name):
    """A valued option of the dump (ghost_limit)."""
    return _policy[name]


def module(kind):
    """The module that dumps and restores `kind` (imported on first use)."""
    return importlib.import_module(_MODULES[kind])
