"""Restore step (child): the task's small kernel state, set from Python right before the jump.

What core-PID.img and mm-PID.img hold besides registers and memory: personality, dumpable,
THP-disable, child-subreaper, timer slack, no_new_privs, nice and scheduling policy,
oom_score_adj, audit loginuid, membarrier() registrations, rlimits and itimers.
It is set last, after the memory is premapped, because some of it (a lower RLIMIT_AS, a personality
flag) would get in the way of crpy's own work.  Signals are blocked in the child, so an itimer
firing now stays pending until rt_sigreturn hands the task its own mask.  Creds are only
checked here (crpy.restore.creds): the restorer blob switches to them as its last step, and it
also re-creates the POSIX timers (once the threads they may notify exist).
"""

import ctypes
import os
import resource

from crpy.errors import RestoreError
from crpy.kernel.libc import libc
from crpy.log import log
from crpy.record import dataclass, field

PR_SET_DUMPABLE, PR_SET_TIMERSLACK, PR_SET_CHILD_SUBREAPER = 4, 29, 36
PR_SET_NO_NEW_PRIVS, PR_SET_THP_DISABLE = 38, 41
RLIM_INFINITY = resource.RLIM_INFINITY
SCHED_RESET_ON_FORK = 0x40000000
ARCH_REQ_XCOMP_PERM = 0x1023
_ITIMERS = ("real", "virt", "prof")


@dataclass
class PosixTimer:
    id: int
    clock: int
    signo: int
    notify: int              # SIGEV_* (SIGEV_THREAD_ID: tid says which thread)
    sival: int
    tid: int
    interval: tuple          # (sec, nsec)
    value: tuple             # (sec, nsec) left at the dump


@dataclass
class TaskState:
    personality: int = 0
    dumpable: int = None
    thp_disabled: bool = False
    child_subreaper: bool = False
    nice: int = None
    sched: tuple = None                  # (policy, rt priority)
    oom_score_adj: int = None
    rlimits: list = field(default_factory=list)     # (resource, soft, hard)
    itimers: list = field(default_factory=list)     # (which, (isec, iusec), (vsec, vusec))
    pdeath_sig: int = 0
    pending: list = field(default_factory=list)     # (shared, raw 128-byte siginfo)
    stopped: bool = False
    stop_signo: int = 19                 # the signal that stopped it (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU)
    uid: tuple = None                    # (uid, gid) of the task's creds
    no_new_privs: bool = False
    timerslack_ns: int = None            # crpy extension field of thread_core_entry, when present
    posix_timers: list = field(default_factory=list)   # PosixTimer, re-created by the restorer blob
    creds: object = None                 # crpy.restore.creds.Creds, switched to by the restorer blob
    loginuid: int = None                 # audit login uid (None: the image has none)
    membarrier: int = 0                  # MEMBARRIER_CMD_REGISTER_* bits of its mm
    xcomp_perm: int = 0                  # dynamic XSAVE features it may use (AMX: bit 18)


def from_images(core, mm):
    tc, th = core.tc, core.thread_core
    st = TaskState(personality=tc.personality)
    st.dumpable = mm.dumpable if mm.HasField("dumpable") else None
    st.thp_disabled = mm.thp_disabled
    st.child_subreaper = tc.child_subreaper
    st.nice = th.sched_nice if th.HasField("sched_nice") else None
    if th.HasField("sched_policy"):
        st.sched = (th.sched_policy, th.sched_prio)
    st.oom_score_adj = tc.oom_score_adj if tc.HasField("oom_score_adj") else None
    if tc.HasField("rlimits"):
        st.rlimits = [(i, r.cur, r.max) for i, r in enumerate(tc.rlimits.rlimits)]
    if tc.HasField("timers"):
        for which, name in enumerate(_ITIMERS):
            t = getattr(tc.timers, name)
            interval, value = (t.isec, t.iusec), (t.vsec, t.vusec)
            if value == (0, 0):
                # An expired periodic timer reads 0 until its signal (pending, restored with the
                # others) is dequeued, when the kernel re-arms it: arm it for one interval.
                value = interval
            if value != (0, 0):
                st.itimers.append((which, interval, value))
        st.posix_timers = [_posix_timer(p) for p in tc.timers.posix]
    st.pdeath_sig = th.pdeath_sig
    st.pending = [(False, bytes(s.siginfo)) for s in th.signals_p.signals]
    st.pending += [(True, bytes(s.siginfo)) for s in tc.signals_s.signals]
    st.stopped = tc.task_state == 3
    if st.stopped and tc.HasField("stop_signo") and tc.stop_signo:
        st.stop_signo = tc.stop_signo
    if th.HasField("creds"):
        from crpy.restore import creds

        st.uid = (th.creds.uid, th.creds.gid)
        st.no_new_privs = bool(th.creds.no_new_privs)
        st.creds = creds.from_entry(th.creds)
    st.loginuid = tc.loginuid if tc.HasField("loginuid") else None
    st.membarrier = tc.membarrier_registration_mask
    st.xcomp_perm = tc.xcomp_perm_dynamic
    if "timerslack_ns" in th.DESCRIPTOR.fields_by_name and th.HasField("timerslack_ns"):
        st.timerslack_ns = th.timerslack_ns
    return st


def copy(state):
    """A TaskState equal to `state`, its lists its own (the restore changes a task's state)."""
    new = TaskState.__new__(TaskState)
    new.__dict__.update(state.__dict__)
    new.rlimits, new.itimers = list(state.rlimits), list(state.itimers)
    new.pending, new.posix_timers = list(state.pending), list(state.posix_timers)
    return new


_RLIMIT_NAMES = ("cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as",
                 "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime")


def check_rlimits(pid, state):
    """RestoreError (before any fork) for a hard limit above crpy's own: raising one needs
    CAP_SYS_RESOURCE, and a task must not come back with lower limits than it had."""
    for res, _, hard in state.rlimits:
        if res >= len(_RLIMIT_NAMES):
            continue
        _, cur_hard = resource.getrlimit(res)
        if _above(_rlim(hard), cur_hard):
            name = "RLIMIT_" + _RLIMIT_NAMES[res].upper()
            raise RestoreError(f"pid {pid} had {name} hard limit {_rlim(hard)}, above what crpy can set "
                               f"({cur_hard})", f"raise crpy's own {name} hard limit (ulimit -H) first, "
                               "or restore with CAP_SYS_RESOURCE")


def _posix_timer(p):
    interval, value = (p.isec, p.insec), (p.vsec, p.vnsec)
    if value == (0, 0) and interval != (0, 0):
        value = interval         # expired, its signal pending: the kernel would re-arm it at dequeue
    return PosixTimer(id=p.it_id, clock=p.clock_id, signo=p.si_signo, notify=p.it_sigev_notify,
                      sival=p.sival_ptr, tid=p.notify_thread_id if p.HasField("notify_thread_id") else 0,
                      interval=interval, value=value)


def check_creds(pid, state):
    """RestoreError (before any fork) for credentials crpy cannot give the task."""
    from crpy.restore import creds

    creds.check(pid, state.creds)


class _Own:
    """This process's own values of what apply() sets, read once (crpy.restore.tree_preload reads
    them before the tree's first fork): a task of a tree has crpy's (each task forks its children
    before it applies its own state), and a value it already has is not set again: no syscall,
    no /proc file opened, in each of a tree's tasks.  apply() keeps it up to date with what it sets."""

    def __init__(self):
        lib = libc()
        self.personality = lib.personality(ctypes.c_ulong(0xffffffff))
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)
        self.sched = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
        if self.sched[0] & SCHED_RESET_ON_FORK:    # crpy's children do not have them: always set
            self.nice = self.sched = None
        self.oom_score_adj = _read_oom_score_adj()
        self.rlimits = {}
        for res in range(len(_RLIMIT_NAMES)):
            try:
                self.rlimits[res] = resource.getrlimit(res)
            except ValueError:               # a limit this Python does not know: asked each time
                pass
        from crpy.kernel import proc

        self.loginuid = proc.loginuid("self")


_own = []


def own(fresh=False):
    """This process's _Own (read at the first call, or again if fresh: each restore's preload)."""
    if fresh:
        _own.clear()                       # (if reading fails, each task reads its own)
    if not _own:
        _own.append(_Own())
    return _own[0]


def _read_oom_score_adj():
    try:
        with open("/proc/self/oom_score_adj", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def apply(state):
    """Set everything; the parts the kernel refuses without CAP_SYS_RESOURCE are logged."""
    lib = libc()
    mine = own()
    if state.personality != mine.personality:
        if lib.personality(ctypes.c_ulong(state.personality)) == -1:
            log.warning("personality %#x: %s", state.personality, os.strerror(ctypes.get_errno()))
        else:
            mine.personality = state.personality
    for option, value in prctl_calls(state):
        _prctl(lib, option, value)
    _sched(state, mine)
    _loginuid(state.loginuid, mine)
    _membarrier(state.membarrier)
    _xcomp_perm(state.xcomp_perm)
    _rlimits(state.rlimits, mine)
    _itimers(state.itimers)


def prctls_only(state):
    """[(option, value)] of the prctl calls apply(state) makes, if those are all it would do in
    this process (everything else it sets is what the process has already), else None: a leaf
    task's restore compiled for C (crpy.restore.leaf) makes just these calls (their failures,
    logged by apply, are ignored there)."""
    mine = own()
    sched = tuple(state.sched) if state.sched else None
    if (state.personality != mine.personality or state.membarrier or state.xcomp_perm
            or (state.nice is not None and state.nice != mine.nice) or (sched and sched != mine.sched)
            or (state.oom_score_adj is not None and state.oom_score_adj != mine.oom_score_adj)
            or (state.loginuid is not None and state.loginuid != mine.loginuid)
            or any(mine.rlimits.get(res) != (_rlim(soft), _rlim(hard)) for res, soft, hard in state.rlimits)
            or any(any(interval) or any(value) for _, interval, value in state.itimers)):
        return None
    return prctl_calls(state)


def prctl_calls(state):
    """[(option, value)] of the prctl calls that set `state`'s flags, in the order made.  Dumpable
    always (a change of euid, by fown, resets it); no-new-privs is one way, but crpy execs nothing
    after it."""
    calls = [(PR_SET_DUMPABLE, state.dumpable)] if state.dumpable in (0, 1) else []
    for flag, option, value in ((state.thp_disabled, PR_SET_THP_DISABLE, 1),
                                (state.child_subreaper, PR_SET_CHILD_SUBREAPER, 1),
                                (state.timerslack_ns, PR_SET_TIMERSLACK, state.timerslack_ns),
                                (state.no_new_privs, PR_SET_NO_NEW_PRIVS, 1)):
        if flag:
            calls.append((option, value))
    return calls


def _prctl(lib, option, value):
    if lib.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == -1:
        log.warning("prctl(%d, %d): %s", option, value, os.strerror(ctypes.get_errno()))


def _sched(state, mine):
    """Policy (with its SCHED_RESET_ON_FORK bit) and nice of the main thread, exactly: a task
    that cannot get them back is not restored (the other threads set theirs in the blob).  Nice
    first: sched_setscheduler to SCHED_IDLE/BATCH keeps it, and a real-time task keeps one too.
    (Both set, in that order, unless the process has them already.)"""
    sched = tuple(state.sched) if state.sched else None
    if (state.nice is not None and state.nice != mine.nice) or (sched and sched != mine.sched):
        try:
            if state.nice is not None:
                os.setpriority(os.PRIO_PROCESS, 0, state.nice)
                mine.nice = state.nice
            if sched:
                os.sched_setscheduler(0, sched[0], os.sched_param(sched[1]))
                mine.sched = sched
        except OSError as e:
            raise RestoreError(f"scheduling policy {state.sched} nice {state.nice}: {os.strerror(e.errno)}",
                               "restore as root (CAP_SYS_NICE) or raise RLIMIT_RTPRIO / RLIMIT_NICE") from None
    if state.oom_score_adj is not None and state.oom_score_adj != mine.oom_score_adj:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(state.oom_score_adj))
            mine.oom_score_adj = state.oom_score_adj
        except OSError as e:
            log.warning("oom_score_adj: %s", e)


AUDIT_UID_UNSET = 4294967295


def _loginuid(loginuid, mine):
    """Write the saved audit login uid (the child has crpy's) before the creds change: it takes
    CAP_AUDIT_CONTROL once a loginuid is set.  A kernel without audit has none to give back."""
    if loginuid is None:
        return
    own = mine.loginuid
    if own == loginuid:
        return
    if own is None:
        if loginuid == AUDIT_UID_UNSET:
            return
        raise RestoreError(f"the task had audit loginuid {loginuid}, and this kernel has no audit "
                           "(no /proc/self/loginuid)", "restore on a kernel built with CONFIG_AUDIT")
    try:
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(loginuid))
        mine.loginuid = loginuid
    except OSError as e:
        raise RestoreError(f"audit loginuid {loginuid}: {os.strerror(e.errno)}",
                           "restore with CAP_AUDIT_CONTROL (the loginuid may be immutable: "
                           "auditctl --loginuid-immutable)") from None


def _membarrier(mask):
    """Register the mm again for each membarrier() kind it was (each REGISTER_* command is one bit)."""
    from crpy.errors import CrpyError
    from crpy.kernel.syscalls import NR, sys_call

    for bit in range(32):
        cmd = mask & (1 << bit)
        if cmd:
            try:
                sys_call(NR.membarrier, cmd, 0, 0, what=f"membarrier(REGISTER {cmd:#x})")
            except CrpyError as e:
                raise RestoreError(f"membarrier() registration {cmd:#x}: {e}") from None


def _xcomp_perm(mask):
    """Ask for the dynamic XSAVE features the process had asked for (AMX): without them its next
    AMX instruction would kill it with SIGILL."""
    from crpy.errors import CrpyError
    from crpy.images.xsave import feature_names
    from crpy.kernel.syscalls import NR, sys_call

    for comp in (c for c in range(64) if mask >> c & 1):
        try:
            sys_call(NR.arch_prctl, ARCH_REQ_XCOMP_PERM, comp, what=f"arch_prctl(ARCH_REQ_XCOMP_PERM, {comp})")
        except CrpyError as e:
            raise RestoreError(f"the task may use {feature_names(1 << comp)[0]} (XSAVE component {comp}), "
                               f"this process cannot: {e}", "restore on a CPU and kernel with it") from None


def _rlim(v):
    """An image's u64 limit as Python's resource module spells it (infinity is -1)."""
    return RLIM_INFINITY if v >= (1 << 63) - 1 else v


def _rlimits(rlimits, mine):
    for res, soft, hard in rlimits:
        soft, hard = _rlim(soft), _rlim(hard)
        cur = mine.rlimits.get(res)
        if cur == (soft, hard):
            continue                          # the process has it already
        _, cur_hard = cur if cur is not None else resource.getrlimit(res)
        want = (soft, hard)
        if _above(hard, cur_hard):
            # Raising a hard limit needs CAP_SYS_RESOURCE, which this machine's root lacks.
            want = (soft if not _above(soft, cur_hard) else cur_hard, cur_hard)
            log.warning("rlimit %d: hard limit %s above crpy's %s, kept at %s", res, hard, cur_hard, cur_hard)
        try:
            resource.setrlimit(res, want)
            mine.rlimits[res] = want
        except (OSError, ValueError) as e:
            log.warning("rlimit %d = %s: %s", res, want, e)


def _above(a, b):
    if b == RLIM_INFINITY:
        return False
    return a == RLIM_INFINITY or a > b


def _itimers(itimers):
    """setitimer with the exact (sec, usec) pairs of the image (a float would round them up).
    The kernel adds one tick to a CPU-time timer's value when it is set: read it back and take
    the excess off once, so that dump/restore cycles do not push the timer further each time."""
    lib = libc()
    for which, interval, value in itimers:
        want = value[0] * 1000000 + value[1]
        got = _setitimer(lib, which, interval, want)
        if which != 0 and want > got - want > 0:
            _setitimer(lib, which, interval, want - (got - want))


def _setitimer(libc, which, interval, value_us):
    """-> the value the kernel reports right after setting it, in microseconds."""
    tv = (ctypes.c_long * 4)(interval[0], interval[1], value_us // 1000000, value_us % 1000000)
    if libc.setitimer(which, ctypes.byref(tv), None) == -1:
        raise RestoreError(f"setitimer({which}): {os.strerror(ctypes.get_errno())}")
    libc.getitimer(which, ctypes.byref(tv))
    return tv[2] * 1000000 + tv[3]
