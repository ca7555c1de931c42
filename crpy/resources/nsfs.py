"""Open namespace files (/proc/PID/ns/KIND, on nsfs): dump and restore.

An fd on a namespace shows as "net:[4026531833]".  crpy restores no namespace yet, so it dumps
only fds on crpy's own namespaces (the inode of the dumping crpy's /proc/self/ns/KIND): the fd
designates the namespace its task lives in, and the restore opens the restoring crpy's own
/proc/self/ns/KIND again, which is the restored task's namespace too.  An fd on any other
namespace is refused at dump (classify), naming pid, fd and kind.  Image: CRIU's ns_file_entry
(ns_cflag the CLONE_NEW* flag; ns_id 0, as crpy writes no namespace images) plus the inode
(crpy's field 1000), logged when the restore's namespace is another one.
"""

import os
import re

O_CLOEXEC = 0o2000000
# nsfs link name -> CLONE_NEW* flag of the namespace kind
CLONE_FLAGS = {"mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
               "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000, "time": 0x00000080}
_TARGET = re.compile(r"^([a-z]+):\[(\d+)\]$")


def is_ns_target(target):
    """True for an fd link such as "net:[4026531833]"."""
    m = _TARGET.match(target)
    return bool(m) and m.group(1) in CLONE_FLAGS


def classify(target, st):
    """'ns' for an fd on one of crpy's own namespaces; otherwise the name of what is refused."""
    name = _TARGET.match(target).group(1)
    try:
        own = os.stat(f"/proc/self/ns/{name}")
    except OSError:
        return f"{name} namespace file"
    if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
        return "ns"
    return f"{name} namespace file of a namespace other than crpy's own (crpy restores no namespace yet)"


def dump_fd(fdfacts, file_id, files=None):
    from crpy.images.pb import fdinfo_pb2, ns_pb2

    name = _TARGET.match(fdfacts.target).group(1)
    entry = ns_pb2.ns_file_entry(id=file_id, ns_id=0, ns_cflag=CLONE_FLAGS[name],
                                 flags=fdfacts.info.flags & ~O_CLOEXEC, ino=fdfacts.st.st_ino)
    return fdinfo_pb2.file_entry(type=fdinfo_pb2.NS, id=file_id, nsf=entry)


def restore_fd(entry, ctx=None):
    """The restoring crpy's own namespace of the dumped kind, opened again."""
    from crpy.errors import RestoreError
    from crpy.log import log

    names = [n for n, flag in CLONE_FLAGS.items() if flag == entry.nsf.ns_cflag]
    if not names:
        raise RestoreError(f"namespace file {entry.id}: unknown namespace kind {entry.nsf.ns_cflag:#x}")
    path = f"/proc/self/ns/{names[0]}"
    try:
        fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
    except OSError as e:
        raise RestoreError(f"cannot open {path}: {e.strerror}") from None
    if entry.nsf.HasField("ino") and os.fstat(fd).st_ino != entry.nsf.ino:
        log.info("%s is namespace %d now, was %d at dump time: the fd follows the task's own namespace",
                 path, os.fstat(fd).st_ino, entry.nsf.ino)
    return fd
