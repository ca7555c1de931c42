"""The fd table of a task: which fd numbers point at which files, in both directions.

Dump: walk /proc/PID/fd and fdinfo while the task is stopped and before the parasite is in (its
own socket must not be seen, and an unsupported fd must stop the dump before the task is
touched), give each open file description a files.img id and each fd an fdinfo entry.  Fds that
share one description (dup, `>log 2>&1`) are found with kcmp(KCMP_FILE) and share the id, so
they share the offset again after a restore.

Restore (restore_fds): runs in the restored child, in Python, before the restorer blob: open each
file, seek, set flags, move it to its number, then close every other fd below keep_above.
"""

import os
from dataclasses import dataclass
from typing import Optional

from crpy import resources
from crpy.errors import RestoreError, UnsupportedResource
from crpy.kernel import proc

FD_CLOEXEC = 1
O_CLOEXEC = 0o2000000
KCMP_FILE = 0


@dataclass
class FdFacts:
    fd: int
    kind: str
    target: str
    st: os.stat_result
    info: proc.FdInfo
    same_as: Optional[int] = None      # a lower fd on the same open file description


def _same_file(pid, fd1, fd2):
    from crpy.errors import CrpyError
    from crpy.kernel.syscalls import NR, sys_call

    try:
        return sys_call(NR.kcmp, pid, pid, KCMP_FILE, fd1, fd2, what="kcmp") == 0
    except CrpyError:
        return False                   # no kcmp: treat them as separate descriptions


def _find_shared(pid, facts):
    """Mark fds whose open file description an earlier fd already holds."""
    seen = {}
    for f in facts:
        key = (f.st.st_dev, f.st.st_ino)
        for earlier in seen.get(key, ()):
            if _same_file(pid, earlier.fd, f.fd):
                f.same_as = earlier.same_as if earlier.same_as is not None else earlier.fd
                break
        seen.setdefault(key, []).append(f)


def collect_fds(pid):
    """Facts of every open fd; UnsupportedResource for the first fd of a kind crpy cannot dump."""
    out = []
    for fd in proc.fds(pid):
        target = proc.fd_target(pid, fd)
        st = proc.fd_stat(pid, fd)
        kind = resources.classify(target, st)
        if not resources.supported(kind):
            raise UnsupportedResource(pid, kind, fd, target,
                                      "crpy cannot dump this kind of file yet; close it before the dump")
        out.append(FdFacts(fd, kind, target, st, proc.fdinfo(pid, fd)))
    _find_shared(pid, out)
    return out


def dump_fds(fdfacts, files):
    """fdinfo entries for the fds; their files go into `files` (crpy.dump.files.FileTable)."""
    from crpy.images.pb import fdinfo_pb2

    entries, ids = [], {}
    for f in fdfacts:
        if f.same_as is not None:
            file_id = ids[f.same_as]
        else:
            file_id = files.add(lambda fid, f=f: resources.module(f.kind).dump_fd(f, fid))
        ids[f.fd] = file_id
        entries.append(fdinfo_pb2.fdinfo_entry(
            id=file_id, flags=FD_CLOEXEC if f.info.flags & O_CLOEXEC else 0,
            type=fdinfo_pb2.REG, fd=f.fd))
    return entries


# ---------------------------------------------------------------- restore side

def _read_fd_images(images_dir, pid):
    from crpy.images import framing

    ids = framing.read_image(framing.image_path(images_dir, "ids", pid), "ids")[0]
    fdinfos = framing.read_image(framing.image_path(images_dir, "fdinfo", ids.files_id), "fdinfo")
    files = {e.id: e for e in framing.read_image(framing.image_path(images_dir, "files"), "files")}
    return fdinfos, files


def _kind_of_entry(entry):
    from crpy.images.pb import fdinfo_pb2

    return "reg" if entry.type == fdinfo_pb2.REG else fdinfo_pb2.fd_types.Name(entry.type).lower()


def restore_fds(images_dir, pid, keep_above):
    """Leave exactly the dumped fds of task `pid` open at their numbers, plus whatever sits at
    keep_above and above (the caller's own fds)."""
    fdinfos, files = _read_fd_images(images_dir, pid)
    wanted = {}
    for e in fdinfos:
        if e.fd >= keep_above:
            raise RestoreError(f"fd {e.fd} of pid {pid} collides with crpy's own fds (>= {keep_above})",
                               "restore with fewer fds open in crpy")
        if e.id not in files:
            raise RestoreError(f"fd {e.fd} of pid {pid} refers to file id {e.id}, absent from files.img")
        wanted[e.fd] = e
    placed = {}                                   # file id -> fd number already holding it
    for fd in sorted(wanted):
        e = wanted[fd]
        if e.id in placed:                        # same file entry: share the open description
            _move(placed[e.id], fd, e, close=False)
            continue
        entry = files[e.id]
        kind = _kind_of_entry(entry)
        if not resources.supported(kind):
            raise RestoreError(f"fd {fd} of pid {pid}: cannot restore a {kind} yet")
        _move(resources.module(kind).restore_fd(entry), fd, e, close=True)
        placed[e.id] = fd
    _close_others(set(wanted), keep_above)


def _move(tmp, fd, e, close):
    """Put open file `tmp` at number `fd` with fdinfo entry e's close-on-exec flag; one
    temporary fd at a time, never many."""
    try:
        if tmp != fd:
            os.dup2(tmp, fd, inheritable=not e.flags & FD_CLOEXEC)
        else:
            os.set_inheritable(fd, not e.flags & FD_CLOEXEC)
    except OSError as err:
        raise RestoreError(f"cannot place fd {fd}: {err.strerror}") from None
    finally:
        if close and tmp != fd:
            os.close(tmp)


def _close_others(keep, keep_above):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < keep_above and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass                               # the listdir fd itself, already gone
