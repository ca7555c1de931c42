"""Restore step (child): the task's small kernel state, set from Python right before the jump.

What core-PID.img and mm-PID.img hold besides registers and memory: personality, dumpable,
THP-disable, child-subreaper, timer slack, no_new_privs, nice and scheduling policy,
oom_score_adj, rlimits and itimers.
It is set last, after the memory is premapped, because some of it (a lower RLIMIT_AS, a personality
flag) would get in the way of crpy's own work.  Signals are blocked in the child, so an itimer
firing now stays pending until rt_sigreturn hands the task its own mask.  Creds are checked, not
changed: crpy restores tasks of its own user (as root) only.
"""

import ctypes
import os
import resource
from dataclasses import dataclass, field

from crpy.errors import RestoreError
from crpy.log import log

PR_SET_DUMPABLE, PR_SET_TIMERSLACK, PR_SET_CHILD_SUBREAPER = 4, 29, 36
PR_SET_NO_NEW_PRIVS, PR_SET_THP_DISABLE = 38, 41
RLIM_INFINITY = resource.RLIM_INFINITY
_ITIMERS = ("real", "virt", "prof")


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
    itimers: list = field(default_factory=list)     # (which, interval s, value s)
    pdeath_sig: int = 0
    pending: list = field(default_factory=list)     # (shared, raw 128-byte siginfo)
    stopped: bool = False
    uid: tuple = None                    # (uid, gid) of the task's creds
    no_new_privs: bool = False
    timerslack_ns: int = None            # crpy extension field of thread_core_entry, when present


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
            if t.vsec or t.vusec:
                st.itimers.append((which, t.isec + t.iusec / 1e6, t.vsec + t.vusec / 1e6))
    st.pdeath_sig = th.pdeath_sig
    st.pending = [(False, bytes(s.siginfo)) for s in th.signals_p.signals]
    st.pending += [(True, bytes(s.siginfo)) for s in tc.signals_s.signals]
    st.stopped = tc.task_state == 3
    if th.HasField("creds"):
        st.uid = (th.creds.uid, th.creds.gid)
        st.no_new_privs = bool(th.creds.no_new_privs)
    if "timerslack_ns" in th.DESCRIPTOR.fields_by_name and th.HasField("timerslack_ns"):
        st.timerslack_ns = th.timerslack_ns
    return st


def check_creds(pid, state):
    """RestoreError for a task of another user: crpy does not switch credentials yet."""
    if state.uid is not None and state.uid != (os.getuid(), os.getgid()):
        raise RestoreError(f"pid {pid} ran as uid/gid {state.uid[0]}/{state.uid[1]}; crpy restores "
                           f"tasks of its own user ({os.getuid()}/{os.getgid()}) only for now")


def apply(state):
    """Set everything; the parts the kernel refuses without CAP_SYS_RESOURCE are logged."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.personality(ctypes.c_ulong(state.personality)) == -1:
        log.warning("personality %#x: %s", state.personality, os.strerror(ctypes.get_errno()))
    if state.dumpable in (0, 1):
        _prctl(libc, PR_SET_DUMPABLE, state.dumpable)
    if state.thp_disabled:
        _prctl(libc, PR_SET_THP_DISABLE, 1)
    if state.child_subreaper:
        _prctl(libc, PR_SET_CHILD_SUBREAPER, 1)
    if state.timerslack_ns:
        _prctl(libc, PR_SET_TIMERSLACK, state.timerslack_ns)
    if state.no_new_privs:
        _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)     # one way: crpy execs nothing after this
    _sched(state)
    _rlimits(state.rlimits)
    _itimers(state.itimers)


def _prctl(libc, option, value):
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == -1:
        log.warning("prctl(%d, %d): %s", option, value, os.strerror(ctypes.get_errno()))


def _sched(state):
    try:
        if state.sched and state.sched[0] != os.SCHED_OTHER:
            os.sched_setscheduler(0, state.sched[0], os.sched_param(state.sched[1]))
        if state.nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, state.nice)
        if state.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(state.oom_score_adj))
    except OSError as e:
        log.warning("scheduling/oom state: %s", e)


def _rlim(v):
    """An image's u64 limit as Python's resource module spells it (infinity is -1)."""
    return RLIM_INFINITY if v >= (1 << 63) - 1 else v


def _rlimits(rlimits):
    for res, soft, hard in rlimits:
        soft, hard = _rlim(soft), _rlim(hard)
        _, cur_hard = resource.getrlimit(res)
        want = (soft, hard)
        if _above(hard, cur_hard):
            # Raising a hard limit needs CAP_SYS_RESOURCE, which this machine's root lacks.
            want = (soft if not _above(soft, cur_hard) else cur_hard, cur_hard)
            log.warning("rlimit %d: hard limit %s above crpy's %s, kept at %s", res, hard, cur_hard, cur_hard)
        try:
            resource.setrlimit(res, want)
        except (OSError, ValueError) as e:
            log.warning("rlimit %d = %s: %s", res, want, e)


def _above(a, b):
    if b == RLIM_INFINITY:
        return False
    return a == RLIM_INFINITY or a > b


def _itimers(itimers):
    import signal

    which = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
    for w, interval, value in itimers:
        signal.setitimer(which[w], value, interval)
