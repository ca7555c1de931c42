"""The owner of an open file (F_SETOWN / F_SETOWN_EX, F_SETSIG, O_ASYNC), for every file kind.

The kernel keeps it per open file description (struct file's f_owner): the task or group
that gets SIGIO (or the F_SETSIG signal) when the file becomes ready, and the uid/euid of
whoever set it, which decide whether that signal may be sent.  /proc shows none of it, so the
dump reads it on crpy's own copy of the description (pidfd_getfd: one struct file, one owner):
F_GETOWN_EX, F_GETSIG and F_GETOWNER_UIDS (the kernel's checkpoint/restore fcntl), into the
fown_entry of the file's files.img entry (CRIU's layout: pid_type is F_OWNER_TID/PID/PGRP).

Restore, once the fd is at its number: O_ASYNC turned off and on again with F_SETFL (an open()
with O_ASYNC never calls the file's fasync, so only this arms it; a tty's fasync also sets an
owner, hence before), then F_SETOWN_EX under the dumped uid/euid (setresuid for the moment),
then F_SETSIG.  An owner must exist when it is set: the dump refuses one outside the tree, or a
thread other than a task's main one (threads are cloned later, by the restorer blob).
"""

import fcntl
import os
import struct

from crpy.record import dataclass

F_SETSIG, F_GETSIG = 10, 11
F_SETOWN_EX, F_GETOWN_EX = 15, 16
F_GETOWNER_UIDS = 17
F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP = 0, 1, 2
O_ASYNC = 0o20000
OWNER_WAIT_S = 3.0                      # an owner forked by another task of the tree may come late


@dataclass(frozen=True)
class Owner:
    pid_type: int = F_OWNER_PID
    pid: int = 0
    signum: int = 0
    uid: int = 0
    euid: int = 0

    @property
    def none(self):
        return not self.pid and not self.signum


NO_OWNER = Owner()


def read_owner(fd):
    """The Owner of crpy's fd on a description (none for an O_PATH fd: fcntl says EBADF)."""
    try:
        fcntl.fcntl(fd, F_GETSIG)
    except OSError as e:
        if e.errno == 9:
            return NO_OWNER
        raise
    pid_type, pid = struct.unpack("ii", fcntl.fcntl(fd, F_GETOWN_EX, b"\0" * 8))
    uid, euid = struct.unpack("II", fcntl.fcntl(fd, F_GETOWNER_UIDS, b"\0" * 8))
    return Owner(pid_type, pid, fcntl.fcntl(fd, F_GETSIG), uid, euid)


def dump_owners(pid, fds, tree_pids):
    """{fd: Owner} of task pid's fds that have one; UnsupportedResource for an owner the
    restore could not set again (outside the dumped tree, or a thread)."""
    from crpy.kernel.syscalls import NR, sys_call

    owners = {}
    pidfd = sys_call(NR.pidfd_open, pid, 0, what="pidfd_open", pid=pid)
    try:
        for fd in fds:
            mine = sys_call(NR.pidfd_getfd, pidfd, fd, 0, what=f"pidfd_getfd of fd {fd}", pid=pid)
            try:
                owner = read_owner(mine)
            finally:
                os.close(mine)
            if not owner.none:
                _check_restorable(pid, fd, owner, tree_pids)
                owners[fd] = owner
    finally:
        os.close(pidfd)
    return owners


def _check_restorable(pid, fd, owner, tree_pids):
    from crpy.errors import UnsupportedResource
    from crpy.kernel import proc

    if not owner.pid:
        return
    if owner.pid_type == F_OWNER_PGRP:
        if any(proc.stat(p).pgrp == owner.pid for p in tree_pids):
            return
        what = f"process group {owner.pid}"
    elif owner.pid in tree_pids:
        return
    elif owner.pid_type == F_OWNER_TID and os.path.exists(f"/proc/{pid}/task/{owner.pid}"):
        what = f"thread {owner.pid}"
    else:
        what = f"pid {owner.pid}"
    raise UnsupportedResource(pid, f"file owner (F_SETOWN) that the restore cannot set again: {what}", fd, None,
                              "crpy restores owners that are a process or process group of the dumped "
                              "tree; set the owner to the process (F_SETOWN getpid()) before the dump")


def to_entry(owner):
    from crpy.images.pb import fown_pb2

    return fown_pb2.fown_entry(uid=owner.uid, euid=owner.euid, signum=owner.signum,
                               pid_type=owner.pid_type, pid=owner.pid)


def fill(file_entry, owner):
    """Put owner into the fown_entry of a files.img entry (whatever its kind); the entry."""
    if owner is None or owner.none:
        return file_entry
    sub = _kind_entry(file_entry)
    if sub is None:
        from crpy.errors import DumpError

        raise DumpError(f"file id {file_entry.id}: its kind keeps no owner (fown) in the images")
    sub.fown.CopyFrom(to_entry(owner))
    return file_entry


def _kind_entry(file_entry):
    """The kind's sub-message of a files.img entry that carries fown and flags (None: no fown)."""
    for desc, value in file_entry.ListFields():
        if desc.message_type is not None and "fown" in desc.message_type.fields_by_name:
            return value
    return None


# ---------------------------------------------------------------- restore side

def is_plain(file_entry):
    """restore() has nothing to do for this entry: no O_ASYNC, no owner, no signal."""
    sub = _kind_entry(file_entry)
    return sub is None or not (getattr(sub, "flags", 0) & O_ASYNC or sub.fown.pid or sub.fown.signum)


def restore(fd, file_entry):
    """Give the fd just placed the O_ASYNC and owner of its files.img entry."""
    sub = _kind_entry(file_entry)
    if sub is None:
        return
    if getattr(sub, "flags", 0) & O_ASYNC:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~O_ASYNC)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_ASYNC)
    f = sub.fown
    if f.pid or f.signum:
        _set_owner(fd, f)
        fcntl.fcntl(fd, F_SETSIG, f.signum)


def _set_owner(fd, f):
    """F_SETOWN_EX as the dumped uid/euid (the kernel records the caller's), waiting a little for
    an owner that another task of the tree has not forked yet."""
    import time

    from crpy.errors import RestoreError

    arg = struct.pack("ii", f.pid_type, f.pid)
    ruid, euid, suid = os.getresuid()
    deadline = time.monotonic() + OWNER_WAIT_S
    while True:
        changed = (f.uid, f.euid) != (ruid, euid)
        if changed:
            os.setresuid(f.uid, f.euid, -1)
        try:
            fcntl.fcntl(fd, F_SETOWN_EX, arg)
            return
        except OSError as e:
            if e.errno != 3 or time.monotonic() >= deadline:      # ESRCH: not forked yet
                raise RestoreError(f"cannot make {_kind_name(f)} {f.pid} the owner of fd {fd}: {e.strerror}") from None
        finally:
            if changed:
                os.setresuid(ruid, euid, suid)
        time.sleep(0.005)


def _kind_name(f):
    return {F_OWNER_TID: "thread", F_OWNER_PID: "process", F_OWNER_PGRP: "process group"}.get(f.pid_type, "pid")
