"""Classify the task's VMAs the way CRIU's images describe them (vma_entry status bits, MAP_*
flags, madvise bits) and decide, per VMA, which of its pages the dump saves:
anon private: present and not the zero page; file private: only COW'd pages; anon shared: its
shmem pages (pagemap-shmem-ID.img); file shared, vDSO, vvar, vsyscall: nothing."""

from crpy.errors import UnsupportedResource
from crpy.images.vma_status import (
    VMA_ANON_PRIVATE, VMA_ANON_SHARED, VMA_AREA_GUARD, VMA_AREA_HEAP, VMA_AREA_MEMFD, VMA_AREA_REGULAR,
    VMA_AREA_STACK, VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED)
from crpy.kernel import hugetlb, proc
from crpy.record import dataclass

MAP_SHARED, MAP_PRIVATE, MAP_DROPPABLE, MAP_ANONYMOUS = 0x01, 0x02, 0x08, 0x20
MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE, MAP_HUGETLB = 0x100, 0x2000, 0x4000, hugetlb.MAP_HUGETLB
O_RDONLY, O_RDWR = 0, 2

# smaps VmFlags -> MAP_* flag, and -> MADV_* number whose bit goes into vma_entry.madv (as CRIU)
_MAP_OF_VMFLAG = {"gd": MAP_GROWSDOWN, "lo": MAP_LOCKED, "nr": MAP_NORESERVE, "ht": MAP_HUGETLB}
_MADV_OF_VMFLAG = {"rr": 1, "sr": 2, "dc": 10, "mg": 12, "hg": 14, "nh": 15, "dd": 16, "wf": 18}

PAGES_NONE, PAGES_PRIVATE, PAGES_SHMEM = "none", "private", "shmem"


@dataclass
class VmaPlan:
    start: int
    end: int
    pgoff: int
    prot: int
    flags: int
    status: int
    shmid: int
    madv: int
    fdflags: object          # None when not a file mapping
    pages: str               # PAGES_NONE / PAGES_PRIVATE / PAGES_SHMEM
    name: str
    pkey: int = 0            # memory protection key (vma_entry.pkey, a crpy extension)
    shmem_size: int = 0      # anon shared: size of the whole object (vma_entry.shmem_size, crpy)
    ring_tail: int = -1      # AIO ring: its tail when planned (crpy.resources.aio.refuse_in_flight)

    @property
    def task_can_read(self):
        """Readable by a vmsplice in the task: PROT_READ (the parasite runs with PKRU 0, so a
        protection key does not stand in the way)."""
        return bool(self.prot & 1)

    def entry(self):
        from crpy.images.pb import vma_pb2

        e = vma_pb2.vma_entry(start=self.start, end=self.end, pgoff=self.pgoff, shmid=self.shmid,
                              prot=self.prot, flags=self.flags, status=self.status, fd=-1)
        if self.madv:
            e.madv = self.madv
        if self.fdflags is not None:
            e.fdflags = self.fdflags
        if self.pkey:
            e.pkey = self.pkey               # crpy extension (field 1000)
        if self.shmem_size:
            e.shmem_size = self.shmem_size   # crpy extension (field 1001)
        return e


def _madv(vma):
    bits = 0
    for flag in vma.vmflags:
        if flag in _MADV_OF_VMFLAG:
            bits |= 1 << _MADV_OF_VMFLAG[flag]
    return bits


def _map_flags(vma):
    """MAP_* flags the VmFlags imply (growsdown, locked, noreserve, hugetlb with its page size,
    as CRIU writes them)."""
    flags = 0
    for flag in vma.vmflags:
        flags |= _MAP_OF_VMFLAG.get(flag, 0)
    if flags & MAP_HUGETLB:
        flags |= hugetlb.size_flag(vma.page_size)
    return flags


def _file_mode(vma):
    """The open mode the mapped file must have: a shared mapping of a file opened O_RDWR may
    become writable (VM_MAYWRITE, "mw" in smaps) even when mapped PROT_READ; one from an O_RDONLY
    fd may not.  (A private mapping may always: O_RDONLY.)"""
    if not vma.shared:
        return O_RDONLY
    may_write = "mw" in vma.vmflags if vma.vmflags else vma.prot & proc.PROT_WRITE
    return O_RDWR if may_write else O_RDONLY


def plan_vma(pid, vma, files, stat_of):
    """One VmaPlan for one /proc VMA; `files` is the FileTable, stat_of(vma) the mapped file's stat."""
    from crpy.dump.facts import anon_shared, memfd

    base = dict(start=vma.start, end=vma.end, pgoff=vma.pgoff, prot=vma.prot, madv=_madv(vma),
                shmid=0, fdflags=None, name=vma.path, pkey=vma.pkey)
    special = vma.special
    anon = MAP_PRIVATE | MAP_ANONYMOUS
    if special == "[vsyscall]":
        return VmaPlan(flags=anon, status=VMA_ANON_PRIVATE | VMA_AREA_VSYSCALL, pages=PAGES_NONE, **base)
    if special == "[vdso]":
        return VmaPlan(flags=anon, status=VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_VDSO,
                       pages=PAGES_NONE, **base)
    if special in ("[vvar]", "[vvar_vclock]"):
        return VmaPlan(flags=anon, status=VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_VVAR,
                       pages=PAGES_NONE, **base)
    extra = _map_flags(vma)
    from crpy.resources import aio

    if aio.is_ring(vma):            # its pages hold head, tail and the unread events
        return VmaPlan(pages=PAGES_PRIVATE, **aio.plan(pid, vma), **base)
    if hugetlb.is_anon(vma) and not vma.shared:     # /anon_hugepage (deleted): anonymous memory
        return VmaPlan(flags=anon | extra, status=VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
                       pages=PAGES_PRIVATE, **base)
    if anon_shared(vma) or hugetlb.is_anon(vma):
        base["shmid"] = vma.inode
        if memfd(vma):
            from crpy.resources import memfd as memfd_files

            memfd_files.note_mapping(pid, vma, files)
        else:        # the object may be larger than what the task still maps of it
            base["shmem_size"] = proc.stat_link(pid, f"map_files/{vma.start:x}-{vma.end:x}").st_size
        return VmaPlan(flags=MAP_SHARED | MAP_ANONYMOUS | extra, status=VMA_AREA_REGULAR | VMA_ANON_SHARED,
                       pages=PAGES_SHMEM, **base)
    if memfd(vma):                 # private (a shared one is anon_shared): the memfd made again
        from crpy.resources import memfd as memfd_files

        base.update(shmid=memfd_files.note_mapping(pid, vma, files), fdflags=O_RDONLY)
        return VmaPlan(flags=MAP_PRIVATE | extra, status=VMA_AREA_REGULAR | VMA_FILE_PRIVATE | VMA_AREA_MEMFD,
                       pages=PAGES_PRIVATE, **base)
    if vma.is_file:
        unlinked = f"/proc/{pid}/map_files/{vma.start:x}-{vma.end:x}" if vma.deleted else None
        base["shmid"] = files.add_path(vma.path, stat_of(vma), unlinked_source=unlinked)  # ghost if unlinked
        base["fdflags"] = _file_mode(vma)
        if vma.shared:
            return VmaPlan(flags=MAP_SHARED | extra, status=VMA_AREA_REGULAR | VMA_FILE_SHARED,
                           pages=PAGES_NONE, **base)
        return VmaPlan(flags=MAP_PRIVATE | extra, status=VMA_AREA_REGULAR | VMA_FILE_PRIVATE,
                       pages=PAGES_PRIVATE, **base)
    if vma.shared:
        raise UnsupportedResource(pid, "shared mapping", target=f"{vma.path or 'anon'} at {vma.start:#x}")
    status = VMA_AREA_REGULAR | VMA_ANON_PRIVATE
    if special == "[heap]":
        status |= VMA_AREA_HEAP
    elif special == "[stack]":
        status |= VMA_AREA_STACK
    base["pgoff"] = 0
    if "dp" in vma.vmflags:          # MAP_DROPPABLE (Linux 6.11+) is a mapping type, like MAP_PRIVATE
        anon = MAP_DROPPABLE | MAP_ANONYMOUS
    return VmaPlan(flags=anon | extra, status=status, pages=PAGES_PRIVATE, **base)


def merge_vvar(plans):
    """[vvar] and [vvar_vclock] become one entry, as CRIU 4.x writes them."""
    out = []
    for p in plans:
        if out and p.status & VMA_AREA_VVAR and out[-1].status & VMA_AREA_VVAR and out[-1].end == p.start:
            out[-1].end = p.end
            continue
        out.append(p)
    return out


def plan_vmas(facts, files):
    from crpy.dump.facts import map_file_stat
    from crpy.resources import aio

    stat_of = lambda v: _mapped_file_stat(facts.pid, v, files, map_file_stat)  # noqa: E731
    plans = []
    for v in facts.vmas:
        if v.deleted or aio.is_ring(v):      # planned from the task itself (ghost, shmem, memfd, ring)
            plans.append(plan_vma(facts.pid, v, files, stat_of))
            continue
        # a VMA another task of the dump has (a fork copies them) has its plan already: copied
        key = ("vma plan", v.start, v.end, v.prot, v.shared, v.pgoff, v.dev, v.inode, v.path, v.vmflags, v.pkey,
               v.page_size)
        seen = files.once(key, lambda v=v: plan_vma(facts.pid, v, files, stat_of))
        plan = object.__new__(VmaPlan)
        plan.__dict__.update(seen.__dict__)
        plans.append(plan)
    return merge_vvar(plans)


def _mapped_file_stat(pid, vma, files, map_file_stat):
    """The stat of a mapped file, taken once per dump for each file the maps lines name (device,
    inode, path): every task of a tree maps the same libraries, and files.img holds one entry per
    file anyway (FileTable.add_path keeps the first stat).  An unlinked one is looked at each time."""
    if vma.deleted:
        return map_file_stat(pid, vma)
    return files.once(("mapped file stat", vma.dev, vma.inode, vma.path), lambda: map_file_stat(pid, vma))


def guard_entry(start, end):
    from crpy.images.pb import vma_pb2

    return vma_pb2.vma_entry(start=start, end=end, pgoff=0, shmid=0, prot=0, flags=0,
                             status=VMA_AREA_GUARD, fd=-1)
