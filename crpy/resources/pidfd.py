"""pidfd: dump and restore of a pidfd of a task of the dumped tree, with its flags
(PIDFD_NONBLOCK, PIDFD_THREAD on a thread-group leader), of a zombie of the tree (restored as a
zombie with its pid, so the same pidfd_open finds it), and of a task that has exited and been
reaped (fdinfo "Pid: -1").  Refused at dump: a pidfd of a task outside the tree, of a thread, and
one shared by several tasks unless it is of the tree's root (shared files are opened before the
tree's other tasks are forked).

A pidfd of a reaped task only tells that the task is gone: it polls readable, waitid on it says
ECHILD, pidfd_send_signal ESRCH, and its fdinfo says Pid: -1; which task it was can no longer be
seen.  Restore makes such a pidfd as criu 4.x does: a helper child that exits at once, a pidfd of
it, and the helper reaped (its pid number is free again right away).

As CRIU does, one files.img entry of type PIDFD (pidfd_entry) per open file: the pid the pidfd
refers to (/proc/PID/fdinfo "NSpid"), its pidfs inode and flags.  Restore asks pidfd_open for
the restored task of that pid: the tree is restored with its pids, and a sibling forked just
after the task restoring its fds is waited for a little.
"""

import os
import time

from crpy.errors import RestoreError, UnsupportedResource

O_CLOEXEC = 0o2000000
PIDFD_THREAD = os.O_EXCL
_WAIT_FOR_TASK = 10.0          # seconds a restore waits for the task of a pidfd to be forked


def target_pid(raw):
    """The pid a pidfd's fdinfo names (its innermost NSpid), -1 once the task is reaped."""
    nspid = raw.get("NSpid", raw.get("Pid", "-1")).split()
    return int(nspid[-1]) if nspid else -1


def check(fdfacts):
    from crpy import resources
    from crpy.kernel import proc

    pid, fd, target = fdfacts.pid, fdfacts.fd, target_pid(fdfacts.info.raw)
    hint = "crpy restores a pidfd only of a process of the dumped tree (live or zombie) or of one reaped"
    if target <= 0:
        return                             # a reaped task: restored as one (_of_a_reaped_task)
    if target not in resources.tree_pids:
        try:
            status = proc.status(target)
        except Exception:
            status = None
        if status is not None and status.tgid != target:
            where = f"of thread {target} (of pid {status.tgid})"
        elif status is not None and status.state == "Z" and status.ppid in resources.tree_pids:
            where = None                   # a zombie of the tree: restored as a zombie, same pid
        elif status is not None and status.state == "Z":
            where = f"of zombie {target}, outside the dumped tree"
        else:
            where = f"of pid {target}, outside the dumped tree"
        if where is not None:
            raise UnsupportedResource(pid, "pidfd", fd, where, hint)
    if target != resources.tree_pids[0] and _held_by_another_task(pid, fd):
        raise UnsupportedResource(pid, "pidfd", fd, f"of pid {target}, shared with another task of the tree",
                                  "the restore opens a shared file before it forks the tree's tasks: "
                                  "crpy restores a shared pidfd only of the tree's root")


def _held_by_another_task(pid, fd):
    """Whether another task of the tree holds this open pidfd (inherited across fork)."""
    from crpy import resources
    from crpy.kernel import proc
    from crpy.resources.fdtable import _same_file

    for other in resources.tree_pids:
        if other != pid and any(_same_file(other, o, fd, pid) for o in proc.fds(other)):
            return True
    return False


def dump_fd(fdfacts, file_id, files):
    from crpy.images.pb import fdinfo_pb2, pidfd_pb2
    from crpy.resources.regfile import fown

    e = pidfd_pb2.pidfd_entry(id=file_id, ino=fdfacts.st.st_ino, flags=fdfacts.info.flags & ~O_CLOEXEC,
                              nspid=target_pid(fdfacts.info.raw), fown=fown())
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.PIDFD, id=file_id, pidfd=e)


def restore_fd(entry, ctx):
    from crpy.errors import CrpyError
    from crpy.kernel.syscalls import NR, sys_call

    e = entry.pidfd
    if e.nspid <= 0:
        return _of_a_reaped_task(e.flags & (os.O_NONBLOCK | PIDFD_THREAD))
    deadline = time.monotonic() + _WAIT_FOR_TASK
    while True:
        try:
            return sys_call(NR.pidfd_open, e.nspid, e.flags & (os.O_NONBLOCK | PIDFD_THREAD), what=f"pidfd_open({e.nspid})")
        except CrpyError as err:
            if time.monotonic() > deadline:
                raise RestoreError(f"pidfd of pid {e.nspid}: {err}") from None
            time.sleep(0.005)


def _of_a_reaped_task(flags):
    """A pidfd (with flags) of a task that has exited and been reaped: of a helper child that
    exits at once, reaped before the pidfd is handed over (so waitid on it says ECHILD)."""
    from crpy.kernel.syscalls import NR, sys_call

    helper = os.fork()
    if helper == 0:
        os._exit(0)
    try:
        fd = sys_call(NR.pidfd_open, helper, flags, what=f"pidfd_open of the helper {helper}")
    finally:
        os.waitpid(helper, 0)
    return fd
