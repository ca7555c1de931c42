"""Step: read everything /proc says about the stopped task, once, before the parasite goes in
(its own mapping and socket must not be seen).  Unsupported fds and mappings are refused here,
so a task crpy cannot dump is never touched."""

import os
from dataclasses import dataclass

from crpy.errors import CrpyError, UnsupportedResource
from crpy.kernel import proc
from crpy.log import log


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


def collect_facts(pid, stop_signal):
    from crpy.dump.target import check_shape
    from crpy.resources.fdtable import collect_fds

    status = proc.status(pid)
    check_shape(pid, status, stop_signal)
    vmas = proc.maps(pid)
    check_vmas(pid, vmas)
    facts = TaskFacts(pid=pid, stat=proc.stat(pid), status=status, vmas=vmas, auxv=proc.auxv(pid),
                      exe=proc.exe(pid), cwd=proc.cwd(pid), root=proc.root(pid),
                      exe_st=proc.stat_link(pid, "exe"), cwd_st=proc.stat_link(pid, "cwd"),
                      root_st=proc.stat_link(pid, "root"), fds=collect_fds(pid), comm=proc.comm(pid))
    for name, path in (("cwd", facts.cwd), ("root", facts.root), ("executable", facts.exe)):
        if path.endswith(" (deleted)"):
            raise UnsupportedResource(pid, f"unlinked {name}", target=path,
                                      hint="unlinked files come in a later crpy")
    log.info("Collected %d VMAs, %d fds of task %d (%s)", len(vmas), len(facts.fds), pid, facts.comm)
    for v in vmas:
        log.debug("vma %s %s", v, " ".join(sorted(v.vmflags)))
    return facts


def anon_shared(vma):
    """MAP_SHARED|MAP_ANONYMOUS memory: shmem that maps shows as '/dev/zero (deleted)'.  A
    MAP_SHARED mapping of a memfd is the same kind of object and is saved the same way (its
    contents through map_files; one object however many tasks map it).  A memfd also open as an
    fd is in memfd.img too (shmid = its inode): the restore makes it a memfd again, one inode for
    its fds and its mappings (crpy.resources.memfd, crpy.restore.tree_shmem)."""
    return vma.shared and vma.deleted and (vma.path == "/dev/zero" or memfd(vma))


def memfd(vma):
    return vma.path.startswith("/memfd:")


def check_vmas(pid, vmas):
    for v in vmas:
        _check_hugetlb(pid, v)
        if anon_shared(v) or v.special or not v.path:
            continue
        if v.path.startswith("/memfd:"):     # (unlinked files: ghost files, crpy.resources.ghost)
            raise UnsupportedResource(pid, "private memfd mapping", target=f"{v.path} at {v.start:#x}",
                                      hint="crpy restores MAP_SHARED memfd mappings only, for now")
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
