"""Getting the parasite into a seized, stopped task (parasite-recipe.md, facts 3-5).

1. Save regs, XSAVE area and signal mask; find the gadgets G and R (and pop gadgets).
2. Write the emergency rt_sigframe below the task's red zone (old bytes kept for the cure),
   and below it the unmap chain: pop rax=11; pop rdi=A; pop rsi=len; G.
3. Inject ONE syscall, mmap(A, blob + args page + stack, RWX, MAP_FIXED_NOREPLACE), from G
   with rsp at the chain, stepping with PTRACE_SYSCALL twice (no int3, no single-step: a dying
   dumper must never leave the task in a trap stop).  Should the dumper die before the blob
   runs, the task goes on from G: the chain unmaps A, then R rt_sigreturns through the frame;
   nothing leaks.
4. Write the relocated blob and its args, then SETREGS(entry), SETSIGMASK(~0), CONT, in that
   order: if the dumper dies in between, the parasite runs anyway and cures itself.
"""

import os
import signal
import struct

from crpy import blobs
from crpy.dump import emergency_frame, infect_gadgets, infect_mem
from crpy.dump.infect_channel import Channel, pack_args
from crpy.errors import KernelError, ParasiteError
from crpy.kernel import proc, ptrace

PAGE = 4096
STACK_SIZE = 64 * 1024
NR_MMAP, NR_MUNMAP = 9, 11
PROT_RWX = 7
MAP_PRIVATE_ANON = 0x02 | 0x20
MAP_FIXED_NOREPLACE = 0x100000
STACK_ROOM = 256 << 20  # never put the parasite closer than this below the task's stack
USER_TOP = 1 << 47
MINUS_ONE = (1 << 64) - 1  # -1 in a u64 register (orig_rax, fd)
ALL_SIGNALS = MINUS_ONE
GROUP_STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


class Saved:
    """What the task had when it was seized, and where the infection put things."""

    def __init__(self, pid):
        self.pid = pid
        self.regs = ptrace.get_regs(pid)
        self.xstate = ptrace.get_xstate(pid)
        self.sigmask = ptrace.get_sigmask(pid)
        self.fds = set(os.listdir(f"/proc/{pid}/fd"))
        self.frame = None
        self.stack_bytes = None  # what the frame overwrote
        self.rseq = None  # (address, size) of its rseq area, which the kernel writes as the parasite runs
        self.rseq_config = None  # PTRACE_GET_RSEQ_CONFIGURATION, asked once
        self.gadget = self.restorer = 0
        self.pops = None
        self.map_base = self.map_len = 0
        self.map_addr = 0  # where the mmap goes (0: the kernel chooses)
        self.syscall_sp = 0  # rsp of injected syscalls: the unmap chain, or the frame
        self.injected = False  # registers were changed at least once
        self.resumed = False  # let run towards a stop not taken yet (inject_syscalls)
        self.seccomp_suspended = False
        self.stopped_by = 0  # the group-stop signal we broke with SIGCONT (sent again at the cure)


def rseq_config(pid):
    """The task's PTRACE_GET_RSEQ_CONFIGURATION (a dict), or None on a kernel without it."""
    try:
        return ptrace.get_rseq_config(pid)
    except KernelError:
        return None


def rseq_area(config):
    """(address, size) of the registered rseq area of rseq_config(pid), or None."""
    return (config["pointer"], config["size"]) if config and config["pointer"] else None


def rseq_abort_fixup(pid, regs, area):
    """A task stopped inside an rseq critical section restarts at its abort handler on the
    next return to user mode (a ptrace stop is a preemption).  Running the parasite first
    would make the kernel forget that (it clears rseq_cs once rip is outside), so do now
    what the kernel would do: clear rseq_cs and move rip to abort_ip.  area: rseq_area(...)."""
    if area is None:
        return
    try:
        cs = struct.unpack("<Q", infect_mem.read(pid, area[0] + 8, 8))[0]
        if not cs:
            return
        _, _, start, length, abort = struct.unpack("<IIQQQ", infect_mem.read(pid, cs, 32))
    except (KernelError, ParasiteError):
        return  # a bad rseq_cs: the kernel will kill the task with SIGSEGV itself
    if start <= regs.rip < start + length:
        infect_mem.write(pid, area[0] + 8, bytes(8))
        regs.rip = abort


def suspend_seccomp(pid, mode=None):
    """A seccomp filter (or strict mode) would kill or refuse the parasite's syscalls: suspend it
    for as long as we trace the task (PTRACE_O_SUSPEND_SECCOMP, needs CAP_SYS_ADMIN).  mode: the
    Seccomp: of its /proc status as the caller read it since the task stopped (None: read here).
    Returns True if it did, so the cure can put the plain options back."""
    if mode is None:
        with open(f"/proc/{pid}/status") as f:
            mode = next((int(line.split()[1]) for line in f if line.startswith("Seccomp:")), 0)
    if not mode:
        return False
    try:
        ptrace.set_options(pid, ptrace.O_TRACESYSGOOD | ptrace.O_SUSPEND_SECCOMP)
    except KernelError as e:
        raise ParasiteError(f"pid {pid} runs under seccomp and it cannot be suspended: {e}",
                            "crpy needs CAP_SYS_ADMIN to dump a seccomp-filtered task") from e
    return True


def layout(blob):
    """(args offset, mapping length): image+bss, one args page, then the parasite's stack."""
    args_off = (blob.size + PAGE - 1) & ~(PAGE - 1)
    return args_off, args_off + PAGE + STACK_SIZE


def pick_address(maps, size, rsp):
    """The highest free range of `size` bytes (plus a guard page each side) well below the
    stack: the task is stopped, so it stays free until our mmap."""
    stack = infect_mem.mapping_at(maps, rsp - 1)
    ceiling = (stack.start if stack else rsp) - STACK_ROOM
    best, prev_end = None, 1 << 20
    for m in sorted(maps, key=lambda m: m.start):
        if m.start >= USER_TOP:
            break
        top = min(m.start, ceiling) - PAGE
        if top - size - PAGE >= prev_end:
            best = (top - size) & ~(PAGE - 1)
        prev_end = max(prev_end, m.end)
        if m.start >= ceiling:
            break
    return best or 0


def _unmap_chain(saved):
    p = saved.pops
    return struct.pack("<7Q", p["rax"], NR_MUNMAP, p["rdi"], saved.map_addr, p["rsi"], saved.map_len,
                       saved.gadget)


def place_frame(saved, maps):
    pid = saved.pid
    frame = emergency_frame.build(saved.regs, saved.xstate, saved.sigmask, saved.restorer)
    if saved.pops and saved.map_addr:
        chain = _unmap_chain(saved)
        frame = emergency_frame.Frame(frame.addr, frame.start - len(chain), chain + frame.data)
    stack = infect_mem.mapping_at(maps, saved.regs.rsp - 1)
    if stack is None or frame.start < stack.start or "w" not in stack.perms:
        raise ParasiteError(f"pid {pid}: no room for the {len(frame.data)}-byte emergency frame below "
                            f"rsp {saved.regs.rsp:#x}", "the task's stack is too small or not writable")
    saved.stack_bytes = infect_mem.read(pid, frame.start, len(frame.data))
    infect_mem.write(pid, frame.start, frame.data)
    saved.frame = frame
    saved.syscall_sp = frame.start


def await_syscall_stop(saved):
    """The syscall-stop a PTRACE_SYSCALL of the task leads to.  A task that was group-stopped
    when seized (kill -STOP) stops again at once when resumed: break the group-stop with a
    SIGCONT (its own delivery suppressed), and remember the stop signal: the cure sends it again."""
    pid = saved.pid
    for _ in range(8):
        saved.resumed = True
        status = ptrace.wait(pid)
        saved.resumed = False
        if ptrace.is_syscall_stop(status):
            return
        stop = os.WSTOPSIG(status) if os.WIFSTOPPED(status) else 0
        if ptrace.is_event_stop(status) and stop in GROUP_STOP_SIGNALS:
            saved.stopped_by = stop
            os.kill(pid, signal.SIGCONT)
        elif saved.stopped_by and (ptrace.is_event_stop(status) or stop == signal.SIGCONT):
            pass  # the SIGCONT's notification trap, or its delivery (suppressed)
        else:
            raise ParasiteError(f"pid {pid}: injected syscall: {ptrace.describe_status(status)}")
        ptrace.syscall(pid)
    raise ParasiteError(f"pid {pid}: injected syscall: the task keeps stopping")


def settle(saved):
    """After an error: the stop a resumed task was heading for, taken (the forced unload then
    starts from a stop, as after a failed inject_syscall)."""
    if saved.resumed:
        saved.resumed = False
        try:
            ptrace.wait(saved.pid)
        except Exception:          # gone, or not ours any more: force_unload says it
            pass


def _check_op(saved, want_op):
    """The syscall-stop the task is at, checked to be the entry/exit we expect."""
    info = ptrace.get_syscall_info(saved.pid)
    if info.op != want_op:
        raise ParasiteError(f"pid {saved.pid}: injected syscall: unexpected stop {info}")
    return info


def _set_syscall(saved, nr, args):
    """The task's registers made to run syscall nr(args) through G, with rsp at the frame."""
    pid = saved.pid
    r = saved.regs.copy()
    r.rip, r.rsp, r.rax, r.orig_rax = saved.gadget, saved.syscall_sp, nr, MINUS_ONE
    a = list(args) + [0] * (6 - len(args))
    r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9 = (x & MINUS_ONE for x in a)
    first, saved.injected = not saved.injected, True
    ptrace.set_regs(pid, r)
    if first:  # no signal delivery (SIGALRM of an itimer...) in the middle of the injection; set
        # only now that the regs lead into the unmap chain, whose sigreturn restores the task's mask
        ptrace.set_sigmask(pid, ALL_SIGNALS)


def inject_syscall(saved, nr, *args):
    """Run one syscall in the task through G with rsp at the frame; returns the raw result.
    Leaves the task at that syscall's exit-stop."""
    return inject_syscalls([(saved, nr, args)])[0]


def inject_syscalls(calls):
    """inject_syscall in several tasks at once: [(saved, nr, args)] -> [raw result]; each task
    runs to its next stop while the others' are taken, so their scheduling overlaps.  After an
    error, settle() each before unloading it."""
    for saved, nr, args in calls:
        _set_syscall(saved, nr, args)
        saved.resumed = True
        ptrace.syscall(saved.pid)
    for saved, nr, _ in calls:
        await_syscall_stop(saved)
        entry = _check_op(saved, ptrace.SYSCALL_INFO_ENTRY)
        if entry.nr != nr:
            raise ParasiteError(f"pid {saved.pid}: injected syscall {nr} entered as {entry.nr}")
        saved.resumed = True
        ptrace.syscall(saved.pid)
    out = []
    for saved, _, _ in calls:
        await_syscall_stop(saved)
        out.append(_check_op(saved, ptrace.SYSCALL_INFO_EXIT).rval)
    return out


def _mmap_args(saved, map_len):
    flags = MAP_PRIVATE_ANON | (MAP_FIXED_NOREPLACE if saved.map_addr else 0)
    return saved.map_addr, map_len, PROT_RWX, flags, -1, 0


def _run_blob(saved, blob, channel, idle_ms, base):
    """The blob written at `base` (the injected mmap's result) and started; -> its args address."""
    pid = saved.pid
    args_off, map_len = layout(blob)
    if base < 0:
        raise ParasiteError(f"pid {pid}: mmap of the parasite failed: {os.strerror(-base)}")
    saved.map_base = base
    if saved.map_addr and base != saved.map_addr:
        raise ParasiteError(f"pid {pid}: the parasite was mapped at {base:#x}, not {saved.map_addr:#x}")
    infect_mem.write(pid, base, blob.relocated(base))
    args = base + args_off
    infect_mem.write(pid, args, pack_args(base, map_len, saved.frame.addr, saved.gadget, channel, idle_ms,
                                               emergency_frame.restart_info(saved.regs)))
    r = saved.regs.copy()
    r.rip, r.rdi, r.rsp = base + blob.sym("parasite_start"), args, base + map_len
    r.rax, r.orig_rax = 0, MINUS_ONE
    ptrace.set_regs(pid, r)
    ptrace.set_sigmask(pid, ALL_SIGNALS)
    ptrace.cont(pid)
    return args


def check_same_netns(pid):
    """The channel is an abstract unix socket: it only reaches tasks of our network namespace."""
    if proc.ns_inode(pid, "net") != _own_netns():
        raise ParasiteError(f"pid {pid} lives in another network namespace",
                            "dumping tasks of other network namespaces is not supported yet")


def _own_netns():
    """The inode of crpy's own network namespace, looked at once per run."""
    global _netns
    if _netns is None:
        _netns = proc.ns_inode("self", "net")
    return _netns


_netns = None


def infect(pid, idle_ms=30000, vmas=None, seccomp=None):
    """-> (saved, channel) with the parasite connected.  vmas: the task's crpy.kernel.proc.Vma
    list, seccomp: its seccomp mode, as read since it was stopped (None: read here).  On any
    error the infection is undone (forced unload) before the error propagates: the task is
    left as seized."""
    return infect_all([(pid, vmas, seccomp)], idle_ms)[0]


def infect_all(tasks, idle_ms=30000):
    """infect() of several tasks at once, [(pid, vmas, seccomp)] -> [(saved, channel)]: the
    injected mmap's stops of one task are taken while the others run to theirs, and the blobs
    start side by side.  On any error every one of them is undone (forced unload) before the
    error propagates."""
    from crpy.dump.infect_cure import force_unload

    blob = blobs.load("parasite")
    started = []
    try:
        for pid, vmas, seccomp in tasks:
            started.append(_prepare(pid, vmas, seccomp, blob))
        map_len = layout(blob)[1]
        bases = inject_syscalls([(saved, NR_MMAP, _mmap_args(saved, map_len)) for saved, _ in started])
        for (saved, channel), base in zip(started, bases):
            _run_blob(saved, blob, channel, idle_ms, base)
        for _, channel in started:
            channel.accept()
    except BaseException:
        for saved, channel in started:
            settle(saved)
            try:
                force_unload(saved)  # stop the task before the channel goes away
            except Exception as e:  # keep the first error; say the second one
                from crpy.log import log

                log.error("pid %d: undoing the failed infection failed too: %s", saved.pid, e)
            finally:
                channel.close()
        raise
    return started


def _prepare(pid, vmas, seccomp, blob):
    """Everything of the infection up to the mmap: saved state, gadgets, the address, the
    channel listening, the emergency frame on the stack; -> (saved, channel)."""
    check_same_netns(pid)
    saved = Saved(pid)
    saved.seccomp_suspended = suspend_seccomp(pid, seccomp)
    saved.rseq_config = rseq_config(pid)     # (the registration stays: dump_regs takes it)
    saved.rseq = rseq_area(saved.rseq_config)
    rseq_abort_fixup(pid, saved.regs, saved.rseq)
    maps = infect_mem.mappings(pid) if vmas is None else infect_mem.from_vmas(vmas)
    saved.gadget = infect_gadgets.find_syscall_ret(pid, maps)
    saved.restorer, saved.pops = infect_gadgets.find_code_gadgets(pid, maps)
    saved.map_len = layout(blob)[1]
    saved.map_addr = pick_address(maps, saved.map_len, saved.regs.rsp)
    channel = Channel(pid)
    try:
        place_frame(saved, maps)
    except BaseException:
        from crpy.dump.infect_cure import force_unload

        try:
            force_unload(saved)
        finally:
            channel.close()
        raise
    return saved, channel
