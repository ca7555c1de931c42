"""Typed parsers of /proc/PID: maps and smaps VmFlags, stat, status, auxv, links, fds, tasks.

Each reader does one read of one file and returns plain values (small dataclasses); nothing is
cached here, so callers decide when a fact is read (the dump reads everything once the task is
stopped).  errno becomes a typed error: a vanished /proc/PID is NoSuchProcess, EPERM/EACCES is
AccessDenied.  No policy lives here (kernel/ knows nothing of images).
"""

import errno
import os
import struct

from crpy.errors import AccessDenied, KernelError, NoSuchProcess
from crpy.record import dataclass, field

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
_DELETED = " (deleted)"


def _path(pid, name):
    return f"/proc/{pid}/{name}"


def _fail(pid, what, exc):
    """Turn an OSError on /proc/PID/... into the matching typed error."""
    err = exc.errno
    if err in (errno.ENOENT, errno.ESRCH) and not os.path.exists(f"/proc/{pid}"):
        return NoSuchProcess(pid)
    if err in (errno.EPERM, errno.EACCES):
        return AccessDenied(f"reading {what} of pid {pid}", err)
    return KernelError(f"reading {what} of pid {pid}", err or errno.EIO)


def read_bytes(pid, name):
    """The whole of /proc/PID/NAME as bytes (one open, reads until EOF)."""
    try:
        fd = os.open(_path(pid, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _fail(pid, name, e) from None
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    except OSError as e:
        raise _fail(pid, name, e) from None
    finally:
        os.close(fd)


def read_text(pid, name):
    return read_bytes(pid, name).decode("utf-8", "surrogateescape")


def read_link(pid, name):
    try:
        return os.readlink(_path(pid, name))
    except OSError as e:
        raise _fail(pid, name, e) from None


def stat_link(pid, name):
    """os.stat of what /proc/PID/NAME (exe, cwd, root, fd/N, map_files/...) points at."""
    try:
        return os.stat(_path(pid, name))
    except OSError as e:
        raise _fail(pid, name, e) from None


def exists(pid):
    return os.path.exists(f"/proc/{pid}")


# ---------------------------------------------------------------- maps / smaps

@dataclass
class Vma:
    start: int
    end: int
    prot: int               # PROT_READ | PROT_WRITE | PROT_EXEC
    shared: bool            # 's' in the perms column
    pgoff: int              # file offset in bytes
    dev: tuple              # (major, minor)
    inode: int
    path: str               # "" for anonymous, "[heap]", "/usr/lib/...", without " (deleted)"
    deleted: bool = False
    vmflags: frozenset = field(default_factory=frozenset)   # smaps VmFlags ("gd", "dd", "hg", ...)
    pkey: int = 0                                            # smaps ProtectionKey
    page_size: int = 0                                       # smaps KernelPageSize, bytes (0: not read)

    @property
    def size(self):
        return self.end - self.start

    @property
    def is_file(self):
        """Backed by a file (a path and an inode), including /dev/zero shared mappings."""
        return self.inode != 0

    @property
    def special(self):
        """[vdso], [vvar], [vvar_vclock], [vsyscall], [heap], [stack], ... or ''."""
        return self.path if self.path.startswith("[") and self.inode == 0 else ""

    def __str__(self):
        perms = "".join(c if self.prot & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
        perms += "s" if self.shared else "p"
        return f"{self.start:x}-{self.end:x} {perms} {self.pgoff:08x} {self.path}"


def _parse_maps_line(line):
    parts = line.split(None, 5)
    lo, hi = parts[0].split("-")
    perms = parts[1]
    prot = (PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0) \
        | (PROT_EXEC if perms[2] == "x" else 0)
    major, minor = parts[3].split(":")
    path = parts[5] if len(parts) > 5 else ""
    deleted = path.endswith(_DELETED)
    if deleted:
        path = path[: -len(_DELETED)]
    return Vma(int(lo, 16), int(hi, 16), prot, perms[3] == "s", int(parts[2], 16),
               (int(major, 16), int(minor, 16)), int(parts[4]), path, deleted)


def maps(pid, vmflags=True):
    """Every VMA of the task, in address order.  With vmflags, read /proc/PID/smaps instead
    of maps so each VMA also carries its VmFlags, protection key and page size (costs a
    page-table walk per VMA)."""
    if not vmflags:
        return [_parse_maps_line(ln) for ln in read_text(pid, "maps").splitlines() if ln]
    vmas = []
    # The file cut at each VmFlags line, its last line per VMA: a piece holds the flags of the
    # VMA before it, then the next VMA's head line and fields.  str.split and str.find run at C
    # speed; a regex over every line cost more than the rest of the parse (18 KB for 23 VMAs).
    pieces = read_text(pid, "smaps").split("\nVmFlags:")
    for i, piece in enumerate(pieces):
        if i:
            end = piece.find("\n")
            flags = piece if end < 0 else piece[:end]
            vmflags = _vmflags_seen.get(flags)
            if vmflags is None:
                vmflags = _vmflags_seen[flags] = frozenset(flags.split())
            vmas[-1].vmflags = vmflags
            if end < 0:
                break
            piece = piece[end + 1:]
        end = piece.find("\n")
        if end < 0:
            break
        vmas.append(_head_vma(piece[:end]))
        vmas[-1].page_size = _field_kb(piece, "\nKernelPageSize:", end) * 1024
        vmas[-1].pkey = _field_kb(piece, "\nProtectionKey:", end)
    return vmas


# Parsed once per run: the tasks of a tree map the same libraries at the same addresses (a fork
# copies the maps), so most smaps head lines and VmFlags recur from task to task.  Emptied when
# full: a long-lived caller (migrate rounds) keeps no more than _SEEN_MAX of them.
_heads_seen, _vmflags_seen = {}, {}
_SEEN_MAX = 8192


def _head_vma(line):
    """A new Vma of a maps head line, parsed once per distinct line (the rest of it its own)."""
    seen = _heads_seen.get(line)
    if seen is None:
        if len(_heads_seen) >= _SEEN_MAX:
            _heads_seen.clear()
            _vmflags_seen.clear()
        seen = _heads_seen[line] = _parse_maps_line(line)
    vma = object.__new__(Vma)
    vma.__dict__.update(seen.__dict__)
    return vma


def _field_kb(piece, name, start):
    """The number after `name` in a VMA's smaps lines (a size in kB, or a plain number), 0 when absent."""
    at = piece.find(name, start)
    if at < 0:
        return 0
    end = piece.find("\n", at + 1)
    return int(piece[at + len(name):end if end >= 0 else None].split()[0])


# ---------------------------------------------------------------- stat

@dataclass
class Stat:
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    tty_nr: int
    flags: int
    num_threads: int
    start_time: int
    start_code: int
    end_code: int
    start_stack: int
    exit_signal: int
    start_data: int
    end_data: int
    start_brk: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    nice: int


def stat(pid):
    """/proc/PID/stat; the comm may hold ')' and spaces, so split after the last ')'."""
    text = read_text(pid, "stat")
    lpar, rpar = text.index("("), text.rindex(")")
    f = text[rpar + 2:].split()
    # f[0] is field 3 (state): field n of proc(5) is f[n - 3].
    n = lambda i: int(f[i - 3])  # noqa: E731
    return Stat(comm=text[lpar + 1:rpar], state=f[0], ppid=n(4), pgrp=n(5), session=n(6),
                tty_nr=n(7), flags=n(9), nice=n(19), num_threads=n(20), start_time=n(22),
                start_code=n(26), end_code=n(27), start_stack=n(28), exit_signal=n(38),
                start_data=n(45), end_data=n(46), start_brk=n(47), arg_start=n(48), arg_end=n(49),
                env_start=n(50), env_end=n(51))


def exit_code(pid):
    """Field 52 of /proc/PID/stat: the wait status a zombie leaves for its parent."""
    text = read_text(pid, "stat")
    return int(text[text.rindex(")") + 2:].split()[52 - 3])


def read_chars(pid):
    """rchar of /proc/PID/io: bytes the process has read so far (read, pread, preadv ...)."""
    for line in read_text(pid, "io").splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- status

@dataclass
class Status:
    name: str
    state: str
    tgid: int
    pid: int
    ppid: int
    tracer_pid: int
    uids: tuple          # real, effective, saved, fs
    gids: tuple
    groups: tuple
    umask: int | None
    threads: int
    sig_pnd: int
    shd_pnd: int
    sig_blk: int
    sig_ign: int
    sig_cgt: int
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    no_new_privs: int
    seccomp: int
    nspid: tuple
    raw: dict


def status(pid):
    raw = {}
    for ln in read_text(pid, "status").splitlines():
        k, _, v = ln.partition(":")
        raw[k] = v.strip()
    hexv = lambda k: int(raw.get(k, "0"), 16)  # noqa: E731
    ints = lambda k: tuple(int(x) for x in raw.get(k, "").split())  # noqa: E731
    return Status(
        name=raw.get("Name", ""), state=raw.get("State", "?")[:1], tgid=int(raw["Tgid"]),
        pid=int(raw["Pid"]), ppid=int(raw["PPid"]), tracer_pid=int(raw["TracerPid"]),
        uids=ints("Uid"), gids=ints("Gid"), groups=ints("Groups"),
        umask=int(raw["Umask"], 8) if "Umask" in raw else None, threads=int(raw["Threads"]),
        sig_pnd=hexv("SigPnd"), shd_pnd=hexv("ShdPnd"), sig_blk=hexv("SigBlk"),
        sig_ign=hexv("SigIgn"), sig_cgt=hexv("SigCgt"), cap_inh=hexv("CapInh"),
        cap_prm=hexv("CapPrm"), cap_eff=hexv("CapEff"), cap_bnd=hexv("CapBnd"),
        cap_amb=hexv("CapAmb"), no_new_privs=int(raw.get("NoNewPrivs", "0")),
        seccomp=int(raw.get("Seccomp", "0")), nspid=ints("NSpid"), raw=raw)


# ---------------------------------------------------------------- auxv, links, tasks

def auxv(pid):
    """The saved auxiliary vector as a flat list [type, value, ...] without the AT_NULL pair."""
    data = read_bytes(pid, "auxv")
    words = list(struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8]))
    out = []
    for i in range(0, len(words) - 1, 2):
        if words[i] == 0:
            break
        out += words[i:i + 2]
    return out


def exe(pid):
    return read_link(pid, "exe")


def cwd(pid):
    return read_link(pid, "cwd")


def root(pid):
    return read_link(pid, "root")


def tasks(pid):
    """Thread ids of the task's thread group."""
    try:
        return sorted(int(t) for t in os.listdir(_path(pid, "task")))
    except OSError as e:
        raise _fail(pid, "task", e) from None


def children(pid):
    """Child pids of every thread of the task (/proc/PID/task/TID/children)."""
    kids = []
    for tid in tasks(pid):
        kids += [int(x) for x in read_text(pid, f"task/{tid}/children").split()]
    return kids


def comm(pid):
    return read_text(pid, "comm").rstrip("\n")


def syscall(pid):
    """(nr, [6 args]) of the syscall the task is blocked in, from /proc/PID/syscall; None while it
    runs, nr -1 when it is blocked outside a syscall."""
    f = read_text(pid, "syscall").split()
    if not f or f[0] == "running":
        return None
    nr = int(f[0])
    return nr, [int(x, 16) for x in f[1:7]] if nr >= 0 else []


def read_mem(pid, addr, length):
    """`length` bytes of the task's memory at `addr` (/proc/PID/mem; the task need not be stopped)."""
    try:
        fd = os.open(_path(pid, "mem"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, length, addr)
        finally:
            os.close(fd)
    except OSError as e:
        raise _fail(pid, f"mem at {addr:#x}", e) from None


def ns_inodes(pid):
    """{name: inode} of the namespaces in /proc/PID/ns (mnt, net, pid, pid_for_children, time, ...)."""
    try:
        return {name: _ns_link_inode(os.readlink(_path(pid, f"ns/{name}"))) for name in os.listdir(_path(pid, "ns"))}
    except OSError as e:
        raise _fail(pid, "ns", e) from None


def ns_inode(pid, name):
    """The inode of namespace /proc/PID/ns/NAME."""
    return _ns_link_inode(read_link(pid, f"ns/{name}"))


def _ns_link_inode(link):
    """The inode in an ns link's text ('net:[4026531833]'): the nsfs inode a stat would give,
    read at a third of a stat's cost (no nsfs dentry to find; ten per task of a tree)."""
    return int(link[link.index("[") + 1:-1])


# ---------------------------------------------------------------- fds

@dataclass
class FdInfo:
    fd: int
    pos: int
    flags: int           # open flags as fdinfo shows them (octal there), O_CLOEXEC included
    mnt_id: int
    ino: int
    raw: dict


def fds(pid):
    """Open fd numbers of the task, ascending."""
    try:
        return sorted(int(x) for x in os.listdir(_path(pid, "fd")))
    except OSError as e:
        raise _fail(pid, "fd", e) from None


def fd_target(pid, fd):
    """What /proc/PID/fd/N points at: a path, or 'socket:[ino]', 'pipe:[ino]', 'anon_inode:...'."""
    return read_link(pid, f"fd/{fd}")


def fd_stat(pid, fd):
    """os.stat of the open file itself (through the magic link)."""
    return stat_link(pid, f"fd/{fd}")


def fdinfo(pid, fd):
    raw = {}
    for ln in read_text(pid, f"fdinfo/{fd}").splitlines():
        k, _, v = ln.partition(":")
        raw[k] = v.strip()
    return FdInfo(fd=fd, pos=int(raw.get("pos", "0")), flags=int(raw.get("flags", "0"), 8),
                  mnt_id=int(raw.get("mnt_id", "0")), ino=int(raw.get("ino", "0")), raw=raw)


# ---------------------------------------------------------------- small per-task values

RLIM_INFINITY = (1 << 64) - 1


def limits(pid):
    """[(soft, hard)] for RLIMIT 0..15 from /proc/PID/limits (readable without CAP_SYS_RESOURCE)."""
    return parse_limits(read_text(pid, "limits"))


def parse_limits(text):
    """[(soft, hard)] of the text of a /proc/PID/limits (a caller that saw the same text before
    need not parse it again)."""
    out = []
    for ln in text.splitlines()[1:]:
        soft, hard = ln[26:47].strip(), ln[47:68].strip()
        out.append(tuple(RLIM_INFINITY if v == "unlimited" else int(v) for v in (soft, hard)))
    return out


def personality(pid):
    return int(read_text(pid, "personality").strip(), 16)


def loginuid(pid, tid=None):
    """The audit login uid of the task (or of its thread tid), 4294967295 when unset; None on a
    kernel without audit (no such file)."""
    name = f"task/{tid}/loginuid" if tid else "loginuid"
    if not os.path.exists(_path(pid, name)) and os.path.exists(_path(pid, "stat")):
        return None
    return int(read_text(pid, name).strip())


def oom_score_adj(pid):
    return int(read_text(pid, "oom_score_adj").strip())
