"""Step: read everything /proc says about the stopped task, once, before the parasite goes in
(its own mapping and socket must not be seen).  Unsupported fds and mappings are refused here,
so a task crpy cannot dump is never touched."""

import os

from crpy.errors import CrpyError, UnsupportedResource
from crpy.kernel import proc
from crpy.log import DEBUG, log
from crpy.record import dataclass


@dataclass
class TaskFacts:
    pid: int
    stat: proc.Stat
    status: proc.Status
    vmas: list
    auxv: list
    exe: str
    cwd: str
    root: str
    exe_st: os.stat_result     # the files themselves, through the /proc links
    cwd_st: os.stat_result
    root_st: os.stat_result
    fds: list                 # [crpy.resources.fdtable.FdFacts]
    comm: str


def collect_facts(pid, stop_signal, memory_only=False):
    """The task's facts, refusing what crpy cannot dump.  memory_only (a pre-dump, as criu's):
    no fds are collected (fds=[]) and nothing but memory and the shape the parasite needs is
    refused (fds, locks, sockets, unlinked files...): the final dump checks all of it."""
    from crpy.dump.target import check_shape
    from crpy.resources.fdtable import collect_fds

    from crpy.resources import ctty

    status = proc.status(pid)
    check_shape(pid, status, stop_signal)
    vmas = proc.maps(pid)
    check_vmas(pid, vmas)
    stat = proc.stat(pid)
    ctty.remember_stat(pid, stat)        # collect_fds' terminal checks want it too: not read again
    facts = TaskFacts(pid=pid, stat=stat, status=status, vmas=vmas, auxv=proc.auxv(pid),
                      exe=proc.exe(pid), cwd=proc.cwd(pid), root=proc.root(pid),
                      exe_st=proc.stat_link(pid, "exe"), cwd_st=proc.stat_link(pid, "cwd"),
                      root_st=proc.stat_link(pid, "root"), fds=[] if memory_only else collect_fds(pid),
                      comm=proc.comm(pid))
    _check_maps_crpy_exe(pid, facts.exe, vmas)
    if not memory_only:
        _check_files(pid, facts)
    log.info("Collected %d VMAs, %d fds of task %d (%s)", len(vmas), len(facts.fds), pid, facts.comm)
    if log.enabled(DEBUG):               # the lines cost a sort and a join per VMA to build
        for v in vmas:
            log.debug("vma %s %s", v, " ".join(sorted(v.vmflags)))
    return facts


def _check_files(pid, facts):
    """Unlinked root or executable, unlinked files too large to copy (not a pre-dump's business)."""
    for name, path, st in (("root", facts.root, facts.root_st), ("executable", facts.exe, facts.exe_st)):
        if path.endswith(" (deleted)") and not (name == "executable" and memfd_file(path, st.st_dev)):
            raise UnsupportedResource(pid, f"unlinked {name}", target=path,
                                      hint="unlinked files come in a later crpy")
    _refuse_large_ghosts(pid, facts)


def _check_maps_crpy_exe(pid, exe, vmas):
    """A task that maps the interpreter crpy runs on, whose own executable is another file: a
    restore by this crpy could not give it its exe (crpy.restore.exe says why)."""
    own = os.readlink("/proc/self/exe")
    if exe == own:
        return
    for v in vmas:
        if v.path == own:
            raise UnsupportedResource(pid, "mapping of the interpreter crpy runs on", target=f"{own} at {v.start:#x}",
                                      hint=f"its executable is {exe}; the kernel cannot set that exe while "
                                           f"{own} is mapped: dump and restore it with crpy on another python3")


def _refuse_large_ghosts(pid, facts):
    """--ghost-limit (and write leases): unlinked files the dump would copy, open or mapped,
    checked before the parasite goes in (crpy.resources.ghost)."""
    from crpy.kernel import hugetlb
    from crpy.resources import ghost

    mapped = [(f"{v.path} at {v.start:#x}", map_file_stat(pid, v)) for v in facts.vmas
              if v.deleted and v.path.startswith("/") and not anon_shared(v) and not memfd(v)
              and not hugetlb.is_anon(v)]
    ghost.refuse_uncopyable(pid, facts.fds, mapped)


def anon_shared(vma):
    """MAP_SHARED|MAP_ANONYMOUS memory: shmem that maps shows as '/dev/zero (deleted)'.  A
    MAP_SHARED mapping of a memfd is the same kind of object and is saved the same way (its
    contents through map_files; one object however many tasks map it).  A memfd also open as an
    fd is in memfd.img too (shmid = its inode): the restore makes it a memfd again, one inode for
    its fds and its mappings (crpy.resources.memfd, crpy.restore.tree_shmem)."""
    return vma.shared and vma.deleted and (vma.path == "/dev/zero" or memfd(vma))


def memfd(vma):
    return vma.path.startswith("/memfd:")


def memfd_file(path, dev):
    """A memfd on the kernel's shmem mount (a hugetlb memfd is not one crpy restores)."""
    from crpy.resources import memfd as memfd_files

    return path.startswith(memfd_files.PREFIX) and memfd_files.on_shmem_dev(dev)


def check_vmas(pid, vmas):
    for v in vmas:
        _check_hugetlb(pid, v)
        if anon_shared(v) or v.special or not v.path:
            continue
        if memfd(v) and not memfd_file(v.path, os.makedev(*v.dev)):
            raise UnsupportedResource(pid, "private hugetlb memfd mapping", target=f"{v.path} at {v.start:#x}",
                                      hint="crpy restores memfds on shmem only, for now")
        if memfd(v):                         # a private memfd mapping: crpy.resources.memfd
            continue
        if v.path.startswith("SYSV"):
            raise UnsupportedResource(pid, "SysV shared memory", target=f"at {v.start:#x}")
        if not v.path.startswith("/"):
            raise UnsupportedResource(pid, "mapping", target=f"{v.path} at {v.start:#x}")


def _check_hugetlb(pid, v):
    """crpy restores anonymous hugetlb memory (MAP_HUGETLB|MAP_ANONYMOUS) of any page size; a
    private one only whole (an anonymous mapping cannot be made at an offset of its object)."""
    from crpy.kernel import hugetlb

    if not hugetlb.is_hugetlb(v):
        return
    if not hugetlb.is_anon(v):
        raise UnsupportedResource(pid, "hugetlbfs file mapping", target=f"{v.path} at {v.start:#x}",
                                  hint="crpy restores anonymous MAP_HUGETLB memory only")
    if not v.page_size:
        raise UnsupportedResource(pid, "hugetlb mapping of unknown page size", target=f"at {v.start:#x}")
    if not v.shared and v.pgoff:
        raise UnsupportedResource(pid, "private hugetlb mapping cut at its start", target=f"at {v.start:#x}",
                                  hint=f"its object offset is {v.pgoff:#x}; a restore maps it from offset 0")


def map_file_stat(pid, vma):
    """os.stat of the file mapped at `vma` (through map_files, so a renamed file still counts)."""
    try:
        return proc.stat_link(pid, f"map_files/{vma.start:x}-{vma.end:x}")
    except CrpyError:
        return os.stat(vma.path)
