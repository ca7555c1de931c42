"""Restore step 1: read and check every image of the task BEFORE anything is forked.

Bad input must never leave a half-restored process, so everything the child will need is read
here, in the parent, into one TaskImage: the pstree entry, core (registers, XSAVE, signal state,
rseq, TLS), mm (fields, auxv, VMAs), the pagemap runs and where their bytes sit in pages-N.img,
and the paths of the exe and of every mapped file.  Any defect is an ImageError naming the image
(or a RestoreError for something crpy cannot restore yet).
"""

import os
import stat

from crpy.errors import ImageError, RestoreError
from crpy.images.vma_status import (
    VMA_ANON_PRIVATE, VMA_ANON_SHARED, VMA_AREA_AIORING, VMA_AREA_GUARD, VMA_AREA_MEMFD, VMA_AREA_REGULAR,
    VMA_AREA_SOCKET, VMA_AREA_SYSVIPC, VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE,
    VMA_FILE_SHARED, VMA_UNSUPP)
from crpy.record import dataclass, field
from crpy.restore import task_state
from crpy.restore.threads import load_threads

PAGE = 4096
TASK_SIZE = 0x7FFFFFFFF000

PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4
AUXV_WORDS = 56              # the kernel's saved_auxv (PR_SET_MM_MAP takes at most 448 bytes)
SIGKILL, SIGSTOP = 9, 19

# gpregs field of user_x86_regs_entry for each user_regs_struct name.
_GPREG_FIELDS = {"rbp": "bp", "rbx": "bx", "rax": "ax", "rcx": "cx", "rdx": "dx", "rsi": "si",
                 "rdi": "di", "orig_rax": "orig_ax", "rip": "ip", "eflags": "flags", "rsp": "sp"}


_MAP_HUGETLB = 0x40000         # crpy.kernel.hugetlb.MAP_HUGETLB


@dataclass
class Area:
    """One VMA of the task, as the restore side uses it."""
    start: int
    end: int
    pgoff: int
    prot: int
    flags: int
    status: int
    madv: int
    kind: str            # anon | anon_shared | file_private | file_shared | vdso | vvar | aio
    path: str = None     # mapped file (file kinds)
    shmid: int = 0
    runs: list = field(default_factory=list)   # [(offset in area, length, pages path, file offset)]
    pkey: int = 0        # memory protection key (crpy extension field of vma_entry, when present)
    inherit: int = 0     # anon_shared object shared in the tree: its address in the inherited mapping
    inherit_span: tuple = None   # (start, end) of that inherited mapping (crpy.restore.tree_shmem)
    cow_runs: list = field(default_factory=list)   # [(offset in area, length)]: pages the parent holds
    cow_src: int = 0     # where the parent's premapped copy of this area sits (set in the child)
    memfd: int = None    # private mapping of a memfd: its inode_id (path: set once it is made)
    fdflags: int = None  # file kinds: open flags of the mapped file (vma_entry.fdflags), if recorded
    shmem_size: int = 0  # anon_shared: size of the whole object (0: what the mappings cover)
    object_runs: list = field(default_factory=list)  # anon_shared: [(object offset, length, path, offset)]
    lazy: bool = False   # --lazy-pages: its pages come from the lazy-pages daemon (crpy.restore.lazy)

    @property
    def page_align(self):
        """The huge page size of a hugetlb VMA (its slot must keep that alignment), else 0."""
        if not self.flags & _MAP_HUGETLB:         # (asked for every VMA of every task planned)
            return 0
        from crpy.kernel import hugetlb

        return hugetlb.page_size(self.flags)

    @property
    def whole_object(self):
        """anon_shared: this mapping is all of its object, from offset 0 (premap can make it)."""
        return self.pgoff == 0 and self.shmem_size <= self.length

    @property
    def length(self):
        return self.end - self.start


@dataclass
class TaskImage:
    images_dir: str
    pid: int
    ppid: int
    pgid: int
    sid: int
    regs: dict
    xsave: bytes
    sigmask: int
    sigactions: list           # 64 (handler, flags, restorer, mask), index sig-1
    comm: str
    rseq: tuple                # (pointer, size, signature) or None
    altstack: tuple            # (ss_sp, ss_flags, ss_size)
    tid_address: int
    robust_list: tuple         # (head, len)
    mm: dict                   # start_code ... env_end, brk, start_brk, start_stack
    auxv: list
    exe_path: str              # (None for a memfd exe until the restore makes it)
    areas: list                # Area, address order, vsyscall left out
    guards: list               # (start, length) of MADV_GUARD_INSTALL regions
    cwd: str = None
    root: str = None
    umask: int = None
    state: object = None       # task_state.TaskState: the small kernel state set last
    pages_bytes: int = 0
    threads: list = field(default_factory=list)   # crpy.restore.threads.ThreadImage, leader aside
    exe_memfd: int = None      # the exe is a memfd (fexecve): its inode_id in memfd.img
    aio_rings: list = field(default_factory=list)   # [(address, ring_len, nr_req)] (crpy.resources.aio)
    page_checks: dict = None   # the page chunks this task checks as it reads them (crpy.restore.pagecheck)


def _framing():
    from crpy.images import framing

    return framing


def _read(kind, id=None, one=False, images_dir=None):
    framing = _framing()
    path = framing.image_path(images_dir, kind, id)
    return framing.read_one(path, kind) if one else framing.read_image(path, kind)


def load_task(images_dir):
    """Read, cross-check and return the TaskImage of the (single) task in images_dir."""
    items = read_pstree(images_dir)
    if len(items) > 1:
        raise RestoreError(f"{_framing().image_path(images_dir, 'pstree')}: {len(items)} tasks in "
                           "the tree; use crpy.restore.tree.load_tree")
    core = read_core(images_dir, items[0].pid)
    return load_one_task(images_dir, items[0], core, files_by_id(images_dir))


def read_pstree(images_dir):
    """The pstree entries (after the inventory is checked); ImageError when there is none."""
    if not os.path.isdir(images_dir):
        raise ImageError(images_dir, "no such images directory",
                         hint="give the -D directory a dump wrote")
    _read("inventory", one=True, images_dir=images_dir)
    entries = _read("pstree", images_dir=images_dir)
    if not entries:
        raise _framing().entry_error(_framing().image_path(images_dir, "pstree"), "no task in the process tree")
    return entries


def read_core(images_dir, pid):
    core = _read("core", pid, images_dir=images_dir)
    if len(core) != 1:
        path = _framing().image_path(images_dir, "core", pid)
        raise _framing().entry_error(path, f"{len(core)} entries, expected 1", 1)
    return core[0]


def read_ids(images_dir, pid):
    """The task's kernel-object ids (ids-PID.img): which fd table, mm, ... it has."""
    return _read("ids", pid, one=True, images_dir=images_dir)


def load_one_task(images_dir, item, core, files):
    """The TaskImage of one live task of the tree (pstree item, its core, files.img by id).
    What siblings' alike images make is made once (FilesById's memos; none in a plain dict)."""
    framing = _framing()
    mm_path = framing.image_path(images_dir, "mm", item.pid)
    mm_bytes = framing.read_bytes(mm_path)
    mms = getattr(files, "mms", None)
    made = mms.get(mm_bytes) if mms is not None else None
    mm = made[0] if made else framing.read_one(mm_path, "mm", mm_bytes)
    tc_bytes = core.tc.SerializeToString()
    task = _task_from_core(images_dir, item, core, getattr(files, "xsaves", None),
                           getattr(files, "sigactions", None), tc_bytes)
    task.state = _checked_state(task.pid, core, mm, getattr(files, "states", None),
                                (tc_bytes, core.thread_core.SerializeToString(), mm_bytes))
    if made:
        _copy_mm(made[1], task)
    else:
        _add_mm(task, mm, files)
        if mms is not None:
            mms[mm_bytes] = (mm, _copy_mm(task, TaskImage.__new__(TaskImage)))
    task.threads = load_threads(images_dir, item)
    _add_pages(task, images_dir)
    _add_fs(task, images_dir, files)
    return task


class FilesById(dict):
    """files.img id -> entry, and (paths) the mapped files already found and checked for this
    restore, by id: every task of a tree maps the same libraries, each is looked at once."""

    def __init__(self):
        super().__init__()
        self.paths = {}
        self.areas = {}        # a vma_entry's bytes -> its Area (_area_once)
        self.mms = {}          # mm image bytes -> (its entry, a TaskImage holding what _add_mm made)
        self.xsaves = {}       # fpregs entry bytes -> the raw XSAVE area made of it
        self.states = {}       # (task core, thread core, mm bytes) -> the TaskState made, checked
        self.sigactions = {}   # task core bytes -> its sigactions


def _checked_state(pid, core, mm, made, key):
    """The task's TaskState, its creds and limits checked; made: {key: state} of those made
    already (each task gets a copy of its own), or None."""
    state = made.get(key) if made is not None else None
    if state is None:
        state = task_state.from_images(core, mm)
        task_state.check_creds(pid, state)
        task_state.check_rlimits(pid, state)
        if made is not None:
            made[key] = state
    return task_state.copy(state)


def _copy_mm(src, dst):
    """dst gets what _add_mm made of src's mm image, its own copies: the tasks of a tree forked
    from one program (siblings) have byte-identical mm images, each made once."""
    dst.mm, dst.auxv, dst.exe_memfd, dst.exe_path = dict(src.mm), list(src.auxv), src.exe_memfd, src.exe_path
    dst.areas, dst.guards = [_copy_area(a) for a in src.areas], list(src.guards)
    dst.aio_rings = list(src.aio_rings)
    return dst


def _copy_area(proto):
    """An Area like proto with page runs of its own (none yet)."""
    area = Area.__new__(Area)
    area.__dict__.update(proto.__dict__)
    area.runs, area.cow_runs, area.object_runs = [], [], []
    return area


def files_by_id(images_dir):
    """files.img id -> reg_file_entry of every regular file, memfd_file_entry of every memfd
    (VMAs and the exe refer to them)."""
    framing = _framing()
    path = framing.image_path(images_dir, "files")
    out = FilesById()
    if not os.path.exists(path):
        return out
    from crpy.resources.fdtable import read_files

    for e in read_files(images_dir).values():        # parsed once: the tasks' fd restores reuse it
        if e.HasField("reg"):
            out[e.id] = e.reg
        elif e.HasField("memfd"):
            out[e.id] = e.memfd
    return out


def _memfd_inode(entry):
    """The inode_id of a memfd_file_entry; None for a regular file's entry."""
    return entry.inode_id if entry.DESCRIPTOR.name == "memfd_file_entry" else None


def _task_from_core(images_dir, item, core, xsaves=None, sigactions=None, tc_bytes=None):
    """xsaves, sigactions: {bytes: what was made of them} for the tasks of a tree (their images
    are alike), tc_bytes the task core's."""
    path = _framing().image_path(images_dir, "core", item.pid)
    if core.mtype != 1 or not core.HasField("thread_info"):
        raise _framing().entry_error(path, "not an x86_64 task (no thread_info)")
    ti, tc, th = core.thread_info, core.tc, core.thread_core
    regs = {n: getattr(ti.gpregs, _GPREG_FIELDS.get(n, n)) for n in _reg_names()}
    if ti.gpregs.mode != 1:
        raise RestoreError(f"{path}: pid {item.pid} is a 32-bit (compat) task; crpy restores 64-bit tasks")
    sigmask = th.blk_sigset if th.HasField("blk_sigset") else tc.blk_sigset
    rseq = None
    if th.HasField("rseq_entry") and th.rseq_entry.rseq_abi_pointer:
        r = th.rseq_entry
        rseq = (r.rseq_abi_pointer, r.rseq_abi_size, r.signature)
    sas = (th.sas.ss_sp, th.sas.ss_flags, th.sas.ss_size) if th.HasField("sas") else (0, 2, 0)
    return TaskImage(
        images_dir=images_dir, pid=item.pid, ppid=item.ppid, pgid=item.pgid, sid=item.sid,
        regs=regs, xsave=_xsave_bytes(path, ti.fpregs, xsaves), sigmask=sigmask,
        sigactions=_sigactions_of(path, tc, sigactions, tc_bytes), comm=th.comm if th.HasField("comm") else tc.comm,
        rseq=rseq, altstack=sas, tid_address=ti.clear_tid_addr,
        robust_list=(th.futex_rla, th.futex_rla_len), mm={}, auxv=[], exe_path=None, areas=[],
        guards=[])


def _reg_names():
    from crpy.restore.sigframe import REG_NAMES

    return REG_NAMES


def _xsave_bytes(path, fpregs, made=None):
    """The raw XSAVE area for this CPU, in its layout (the image's components moved to this CPU's
    offsets; those this CPU has and the image lacks in their init state); an image holding state
    of a feature this CPU lacks is refused.  made: {entry bytes: area} of those made already."""
    from crpy.cpuinfo import stored_layout
    from crpy.images import xsave

    key = fpregs.SerializeToString() if made is not None else None
    if key is not None and key in made:
        return made[key]
    try:
        raw = bytes(xsave.to_raw(fpregs, stored_layout()))
    except (ValueError, KeyError) as e:
        raise _framing().entry_error(path, f"bad FPU/XSAVE state: {e}") from None
    if made is not None:
        made[key] = raw
    return raw


def _sigactions_of(path, tc, made, key):
    """_sigactions of task core tc, a list of its own; made: {key: the list made} or None."""
    if made is None:
        return _sigactions(path, tc.sigactions)
    if key not in made:
        made[key] = _sigactions(path, tc.sigactions)
    return list(made[key])


def _sigactions(path, entries):
    """64 (handler, flags, restorer, mask), index sig-1.  CRIU writes one entry per signal
    1..64 without SIGKILL and SIGSTOP (62); accept 64 entries as well."""
    sigs = [s for s in range(1, 65) if s not in (SIGKILL, SIGSTOP)]
    if len(entries) == 64:
        sigs = list(range(1, 65))
    elif len(entries) not in (0, 62):
        raise _framing().entry_error(path, f"{len(entries)} sigactions, expected 62 (CRIU) or 64")
    out = [(0, 0, 0, 0)] * 64
    for sig, e in zip(sigs, entries):
        out[sig - 1] = (e.sigaction, e.flags, e.restorer, e.mask)
    return out


def _add_mm(task, mm, files):
    path = _framing().image_path(task.images_dir, "mm", task.pid)
    task.mm = dict(start_code=mm.mm_start_code, end_code=mm.mm_end_code, start_data=mm.mm_start_data,
                   end_data=mm.mm_end_data, start_brk=mm.mm_start_brk, brk=mm.mm_brk,
                   start_stack=mm.mm_start_stack, arg_start=mm.mm_arg_start, arg_end=mm.mm_arg_end,
                   env_start=mm.mm_env_start, env_end=mm.mm_env_end)
    _check_mm_fields(path, task.mm)
    auxv = list(mm.mm_saved_auxv)
    while len(auxv) >= 2 and auxv[-2:] == [0, 0]:       # AT_NULL is added back when restoring
        auxv = auxv[:-2]
    if len(auxv) > AUXV_WORDS - 2 or len(auxv) % 2:
        raise _framing().entry_error(path, f"auxv of {len(auxv)} words (at most {AUXV_WORDS - 2}, in pairs)")
    task.auxv = auxv
    if mm.exe_file_id not in files:
        raise _framing().entry_error(path, f"exe_file_id {mm.exe_file_id} is not a regular file or memfd in files.img")
    task.exe_memfd = _memfd_inode(files[mm.exe_file_id])
    if task.exe_memfd is None:
        task.exe_path = _existing_file(files[mm.exe_file_id], "the executable", task.images_dir)
    prev_end = 0
    for i, v in enumerate(mm.vmas):
        area = _area_once(path, i, v, files)
        if area is None:
            continue
        if area.kind == "guard":
            task.guards.append((area.start, area.length))
            continue
        if area.start < prev_end:
            raise _framing().entry_error(path, f"vma {i} at {area.start:#x} overlaps the one before it")
        prev_end = area.end
        task.areas.append(area)
    if mm.aios or any(a.kind == "aio" for a in task.areas):
        from crpy.resources import aio

        task.aio_rings = aio.load_rings(path, mm, task.areas)


def _check_mm_fields(path, f):
    """What PR_SET_MM_MAP will insist on, checked now rather than after the fork."""
    for name, value in f.items():
        if not PAGE <= value < TASK_SIZE:
            raise _framing().entry_error(path, f"mm field {name} = {value:#x} is outside the user address space")
    for lo, hi, strict in (("start_code", "end_code", True), ("start_data", "end_data", False),
                           ("start_brk", "brk", False), ("arg_start", "arg_end", False),
                           ("env_start", "env_end", False)):
        if f[lo] > f[hi] or (strict and f[lo] == f[hi]):
            raise _framing().entry_error(path, f"mm field {lo} {f[lo]:#x} is above {hi} {f[hi]:#x}")


_NOT_MADE = object()


def _area_once(path, i, v, files):
    """_area, made and checked once per distinct vma_entry of the restore (the tasks of a tree
    share most of theirs: 128 forked tasks, ~22 VMAs each, ~25 distinct), each task given its own
    copy (its page runs are its own)."""
    made = getattr(files, "areas", None)
    if made is None:
        return _area(path, i, v, files)
    key = v.SerializeToString()
    proto = made.get(key, _NOT_MADE)
    if proto is _NOT_MADE:
        proto = made[key] = _area(path, i, v, files)
    if proto is None:
        return None
    return _copy_area(proto)


def _area(path, i, v, files):
    if v.start % PAGE or v.end % PAGE or v.start >= v.end:
        raise _framing().entry_error(path, f"vma {i} [{v.start:#x}, {v.end:#x}) is not a page-aligned range")
    if v.status & VMA_AREA_VSYSCALL:
        return None
    if v.end > TASK_SIZE:
        raise _framing().entry_error(path, f"vma {i} ends at {v.end:#x}, above the user address space")
    area = Area(v.start, v.end, v.pgoff, v.prot, v.flags, v.status, v.madv, "", shmid=v.shmid)
    if "pkey" in v.DESCRIPTOR.fields_by_name:
        area.pkey = v.pkey
    if v.HasField("shmem_size"):
        area.shmem_size = v.shmem_size
    s = v.status
    if s & VMA_AREA_GUARD and not s & VMA_AREA_REGULAR:
        area.kind = "guard"
    elif s & VMA_AREA_VVAR:
        area.kind = "vvar"
    elif s & VMA_AREA_VDSO:
        area.kind = "vdso"
    elif s & VMA_AREA_MEMFD and s & VMA_FILE_PRIVATE:
        area.kind = "file_private"
        area.memfd = _memfd_inode(files[v.shmid]) if v.shmid in files else None
        if area.memfd is None:
            raise _framing().entry_error(path, f"vma {i} at {v.start:#x} maps file id {v.shmid}, not a memfd "
                                         "in files.img")
    elif s & VMA_AREA_AIORING:     # premapped with its saved pages; the blob makes the context
        area.kind = "aio"
    elif s & (VMA_AREA_SYSVIPC | VMA_AREA_SOCKET | VMA_AREA_MEMFD | VMA_UNSUPP):
        raise RestoreError(f"{path}: vma {i} at {v.start:#x} (status {s:#x}) is a kind crpy cannot restore yet")
    elif s & VMA_ANON_PRIVATE:
        area.kind = "anon"
        _check_droppable(path, i, v)
    elif s & VMA_ANON_SHARED:
        area.kind = "anon_shared"
    elif s & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
        area.kind = "file_private" if s & VMA_FILE_PRIVATE else "file_shared"
        area.fdflags = v.fdflags if v.HasField("fdflags") else None
        if v.shmid not in files or _memfd_inode(files[v.shmid]) is not None:
            raise _framing().entry_error(path, f"vma {i} at {v.start:#x} maps file id {v.shmid}, not a regular "
                                         "file in files.img")
        area.path = _mapped_file_path(path, v, files)
    else:
        raise _framing().entry_error(path, f"vma {i} at {v.start:#x} has an unknown status {s:#x}")
    return area


MAP_TYPE, MAP_DROPPABLE = 0x0F, 0x08


def _check_droppable(path, i, v):
    """A MAP_DROPPABLE VMA needs a kernel that has it (6.11+): refused before anything is forked."""
    from crpy.restore.premap import droppable_supported

    if v.flags & MAP_TYPE == MAP_DROPPABLE and not droppable_supported():
        raise RestoreError(f"{path}: vma {i} at {v.start:#x} is MAP_DROPPABLE, which this kernel lacks",
                           "restore on Linux 6.11 or later")


def _mapped_file_path(mm_path, v, files):
    """The path VMA entry v maps: its ghost, or the existing file once checked (found once per
    file id: files is a FilesById, which keeps the paths found)."""
    found = files.paths.get(v.shmid)
    if found is None:
        reg = files[v.shmid]
        found = files.paths[v.shmid] = (_mapped_ghost(mm_path, v.shmid, reg)
                                  or _existing_file(reg, f"the file mapped at {v.start:#x}",
                                                    os.path.dirname(mm_path)))
    return found


def _mapped_ghost(mm_path, file_id, reg):
    """A mapped file unlinked at dump time: its ghost, re-created now (crpy.resources.ghost)."""
    from crpy.resources import ghost

    return ghost.mapped_path(os.path.dirname(mm_path), file_id, reg.name)


def _existing_file(reg, what, images_dir):
    """The path of a mapped file, once it is checked to be the file the dump saw."""
    from crpy.resources.regfile import check_same_file

    path = reg.name
    try:
        st = os.stat(path)
    except ValueError:                    # a NUL byte: no file has this name
        raise _files_entry_error(images_dir, reg, f"{what} {path!r} is not a file name (it holds a NUL "
                                 "byte)") from None
    except OSError as e:
        raise RestoreError(f"{what} {path} is gone: {os.strerror(e.errno)}",
                           "restore needs the same files as at dump time") from None
    if not stat.S_ISREG(st.st_mode):
        raise RestoreError(f"{what} {path} is no longer a regular file")
    check_same_file(reg, st)
    return path


def _files_entry_error(images_dir, reg, message):
    """ImageError at the files.img entry of reg."""
    framing = _framing()
    path = framing.image_path(images_dir, "files")
    entries = framing.read_image(path, "files")
    index = next((i for i, e in enumerate(entries) if e.HasField("reg") and e.reg.id == reg.id), len(entries))
    return framing.entry_error(path, message, index)


def _add_pages(task, images_dir):
    """Attach every pagemap run to its area(s) with its place in pages-N.img; check sizes."""
    framing = _framing()
    mpath = framing.image_path(images_dir, "pagemap", task.pid)
    entries = framing.read_image(mpath, "pagemap")
    if not entries:
        raise _framing().entry_error(mpath, "no pagemap head")
    runs = [(e.vaddr, framing.pagemap_nr_pages(e) * PAGE, _pe_flags(e)) for e in entries[1:]]
    ppath = _raw_pages_path(framing.image_path(images_dir, "pages", entries[0].pages_id), entries[0])
    task.pages_bytes += _place_runs(task.areas, runs, ppath, mpath, _ParentPages(images_dir, task.pid))
    for area in task.areas:
        if area.kind == "anon_shared":
            spath = framing.image_path(images_dir, "pagemap_shmem", area.shmid)
            if os.path.exists(spath):
                task.pages_bytes += _add_shmem(area, framing, spath)


def _raw_pages_path(ppath, head):
    """Where the raw bytes of a pages image are: itself, or its decoded copy (--compress)."""
    from crpy.images import pagecodec

    return pagecodec.raw_path(ppath, head)


def _pe_flags(e):
    """PE_* flags of a pagemap entry (older images: in_parent, else present).  PE_LAZY only
    says the pages could be served lazily; with PE_PRESENT they are in the pages image."""
    if e.HasField("flags"):
        return e.flags
    return PE_PARENT if e.in_parent else PE_PRESENT


class _ParentPages:
    """PE_PARENT runs of a pre-dump chain (a `parent` link in the images dir): their bytes are in
    the previous rounds' pages images (crpy.images.chain).  Without the link PE_PARENT means pages
    shared with the parent task (crpy.dump.tree_cow)."""

    def __init__(self, images_dir, pid):
        from crpy.images import chain

        self.images_dir, self.pid = images_dir, pid
        self.chained = chain.parent_dir(images_dir) is not None

    def pieces(self, vaddr, length):
        from crpy.images import chain

        return chain.resolve(self.images_dir, self.pid, vaddr, length)


def _place_runs(areas, runs, ppath, mpath, parent_pages=None):
    """Split runs at area boundaries into area.runs; returns the bytes the pages file must have."""
    import bisect

    starts = [a.start for a in areas]
    offset = 0
    for n, (vaddr, length, flags) in enumerate(runs):
        if vaddr % PAGE or length <= 0:
            raise _framing().entry_error(mpath, f"entry {n + 1}: bad run {vaddr:#x}+{length:#x}", n + 1)
        if flags & PE_PARENT and parent_pages is not None and parent_pages.chained:
            for addr, piece, path, at in parent_pages.pieces(vaddr, length):
                _place_data(areas, starts, addr, piece, path, at, mpath, n, bisect)
            continue
        if flags & PE_PARENT:
            _place_cow_run(areas, starts, vaddr, length, mpath, n)
            continue
        if not flags & PE_PRESENT:
            raise RestoreError(f"{mpath}: entry {n + 1} (flags {flags:#x}) has no pages; crpy restores "
                               "full dumps only")
        _place_data(areas, starts, vaddr, length, ppath, offset, mpath, n, bisect)
        offset += length
    _check_pages_size(ppath, mpath, offset)
    return offset


def _place_data(areas, starts, vaddr, length, ppath, offset, mpath, n, bisect):
    """Pages [vaddr, vaddr+length) whose bytes are at `offset` in ppath, cut at area ends."""
    addr, end = vaddr, vaddr + length
    idx = max(bisect.bisect_right(starts, addr) - 1, 0)
    while addr < end:
        while idx < len(areas) and areas[idx].end <= addr:
            idx += 1
        if idx == len(areas) or areas[idx].start > addr:
            raise _framing().entry_error(mpath, f"entry {n + 1}: page {addr:#x} lies in no restorable VMA", n + 1)
        area = areas[idx]
        if area.kind not in ("anon", "file_private", "vdso", "vvar", "aio"):
            raise _framing().entry_error(mpath, f"entry {n + 1}: page {addr:#x} lies in a {area.kind} VMA", n + 1)
        piece = min(end, area.end) - addr
        if area.kind in ("anon", "file_private", "aio"):    # CRIU also saves the vDSO: not needed
            area.runs.append((addr - area.start, piece, ppath, offset))
        offset += piece
        addr += piece


def _place_cow_run(areas, starts, vaddr, length, mpath, n):
    """A PE_PARENT run: pages the task shares with its parent, inherited at restore (fork)."""
    import bisect

    idx = bisect.bisect_right(starts, vaddr) - 1
    area = areas[idx] if idx >= 0 else None
    if area is None or area.kind != "anon" or vaddr + length > area.end:
        raise _framing().entry_error(mpath, f"entry {n + 1}: pages {vaddr:#x}+{length:#x} from the parent "
                                     "lie in no anonymous private VMA", n + 1,
                                     hint="images of a pre-dump chain need their 'parent' link to the previous round")
    area.cow_runs.append((vaddr - area.start, length))


def _check_pages_size(ppath, mpath, need):
    try:
        have = os.stat(ppath).st_size
    except FileNotFoundError:
        if need == 0:
            return
        raise ImageError(ppath, "pages image is missing", hint=f"{mpath} lists {need} bytes of pages") from None
    if have < need:
        raise ImageError(ppath, f"pagemap points past the end of the pages ({have} bytes, "
                         f"{os.path.basename(mpath)} needs {need})", have,
                         "the pages image is truncated: an interrupted dump or a full disk?")
    if have > need:
        raise ImageError(ppath, f"{have - need} bytes more than {os.path.basename(mpath)} lists",
                         need, "the pagemap and the pages image do not belong together")


def _add_shmem(area, framing, spath):
    """The object's pages, at their offsets in the object (area.object_runs), and those this
    mapping shows (area.runs): a mapping may show only a part of its object (pgoff, shrunk)."""
    entries = framing.read_image(spath, "pagemap_shmem")
    if not entries:
        raise framing.entry_error(spath, "no pagemap head")
    ppath = _raw_pages_path(framing.image_path(os.path.dirname(spath), "pages", entries[0].pages_id), entries[0])
    offset = 0
    size = max(area.shmem_size, area.pgoff + area.length)
    for n, e in enumerate(entries[1:]):
        length = framing.pagemap_nr_pages(e) * PAGE
        if e.vaddr % PAGE or e.vaddr + length > size and area.shmem_size:
            raise framing.entry_error(spath, f"entry {n + 1} at object offset {e.vaddr:#x} lies outside "
                                      f"the object of {size:#x} bytes mapped at {area.start:#x}", n + 1)
        area.object_runs.append((e.vaddr, length, ppath, offset))
        lo, hi = max(e.vaddr, area.pgoff), min(e.vaddr + length, area.pgoff + area.length)
        if lo < hi:
            area.runs.append((lo - area.pgoff, hi - lo, ppath, offset + lo - e.vaddr))
        offset += length
    _check_pages_size(ppath, spath, offset)
    return offset


def _add_fs(task, images_dir, files):
    framing = _framing()
    path = framing.image_path(images_dir, "fs", task.pid)
    if not os.path.exists(path):
        return
    fs = framing.read_one(path, "fs")
    cwd, root = files.get(fs.cwd_id), files.get(fs.root_id)
    task.cwd = cwd.name if cwd else None
    task.root = root.name if root else None
    task.umask = fs.umask if fs.HasField("umask") else None
