"""File locks held by a task: flock, POSIX (fcntl) and OFD locks and leases, dumped and taken again.

Dump: /proc/PID/fdinfo/N lists the locks held through fd N ("lock:" lines); as with criu they
are dumped only with --file-locks, otherwise a held lock stops the dump (one line, before the
parasite goes in).  They go to filelocks.img (file_lock_entry, CRIU's).  Restore: once every fd
of the task is in place and no other fd will be closed, each lock is taken again (never
waiting: a conflicting lock is an error), in the restored task itself, so a POSIX lock has the
task as its owner again.  A lease (F_SETLEASE) is CRIU's FL_LEASE entry, type F_RDLCK or
F_WRLCK, taken again with F_SETLEASE on its fd; a lease being broken at dump time is refused
(flag 0 here), as are NFS delegations.
"""

import fcntl
import os
import struct

FL_POSIX, FL_FLOCK, FL_OFD, FL_LEASE = 1, 2, 4, 32
_FLAGS = {"POSIX": FL_POSIX, "FLOCK": FL_FLOCK, "OFDLCK": FL_OFD, "LEASE": FL_LEASE}
F_OFD_SETLK = 37
F_SETLEASE = 1024


def parse_fdinfo_locks(text):
    """[(flag, type, start, len)] of the "lock:" lines of an fdinfo text; kinds crpy does not
    know (delegations) and leases not simply ACTIVE (being broken) come back with flag 0."""
    out = []
    for line in text.splitlines():
        if not line.startswith("lock:"):
            continue
        f = line.split(":", 2)[2].split()        # FLOCK ADVISORY WRITE PID MAJ:MIN:INO START END
        if f[0] == "->":                         # a waiter on the lock above, not a holder
            continue
        start, end = int(f[5]), f[6]
        flag = _FLAGS.get(f[0], 0)
        if flag == FL_LEASE and f[1] != "ACTIVE":
            flag = 0
        out.append((flag, 1 if f[2] == "WRITE" else 0, start,
                    0 if end == "EOF" else int(end) - start + 1))
    return out


def fd_locks(pid, fd):
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            return parse_fdinfo_locks(f.read())
    except FileNotFoundError:
        return []


def lock_entries(pid, fd, locks):
    from crpy.images.pb import file_lock_pb2

    return [file_lock_pb2.file_lock_entry(flag=flag, type=typ, pid=pid, fd=fd, start=start, len=length)
            for flag, typ, start, length in locks]


# ---------------------------------------------------------------- restore side

def load(images_dir, pid):
    """Lock entries of task `pid` from filelocks.img ([] when the dump had none)."""
    from crpy.images import framing

    path = framing.image_path(images_dir, "file_locks")
    if not os.path.exists(path):
        return []
    return [e for e in framing.read_image(path, "file_locks") if e.pid == pid]


def take(entry):
    """Take one dumped lock again on fd entry.fd (RestoreError if someone else holds it)."""
    from crpy.errors import RestoreError

    try:
        if entry.flag == FL_FLOCK:
            fcntl.flock(entry.fd, (fcntl.LOCK_EX if entry.type == 1 else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        elif entry.flag == FL_LEASE:
            fcntl.fcntl(entry.fd, F_SETLEASE, fcntl.F_WRLCK if entry.type == 1 else fcntl.F_RDLCK)
        else:
            cmd = F_OFD_SETLK if entry.flag == FL_OFD else fcntl.F_SETLK
            lock = struct.pack("hhqqi4x", fcntl.F_WRLCK if entry.type == 1 else fcntl.F_RDLCK,
                               os.SEEK_SET, entry.start, entry.len, 0)
            fcntl.fcntl(entry.fd, cmd, lock)
    except OSError as e:
        kind = {FL_FLOCK: "flock", FL_OFD: "OFD", FL_POSIX: "POSIX", FL_LEASE: "lease"}.get(entry.flag, "?")
        raise RestoreError(f"cannot take the {kind} lock of fd {entry.fd} again: {e.strerror}",
                           "another process holds a conflicting lock on that file") from None


def restore_locks(images_dir, pid):
    for entry in load(images_dir, pid):
        take(entry)
