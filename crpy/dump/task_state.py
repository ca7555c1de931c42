"""Step: what only the task itself can tell, asked through the parasite: signal handlers, brk,
altstack, clear_child_tid, personality, dumpable, securebits, itimers, ...; and the per-thread
scheduling state (policy, SCHED_RESET_ON_FORK, rt priority, nice), which any task may read."""

import os

from crpy.errors import DumpError, NoSuchProcess, UnsupportedResource
from crpy.log import log

NSIG = 64
SCHED_DEADLINE = 6
SCHED_RESET_ON_FORK = 0x40000000


def dump_sigactions(parasite):
    acts = list(parasite.sigactions())
    if len(acts) != NSIG:
        raise DumpError(f"the parasite returned {len(acts)} sigactions instead of {NSIG}")
    for sig, (handler, flags, _, mask) in enumerate(acts, 1):
        if handler:
            log.debug("sigaction %d: handler %#x flags %#x mask %#x", sig, handler, flags, mask)
    return acts


def dump_misc(parasite):
    """The parasite's misc keys, plus "posix_timers": [posix_timer_entry]."""
    from crpy.dump.timers import dump_posix_timers

    misc = dict(parasite.misc())
    log.debug("Task misc: %s", misc)
    misc["posix_timers"] = dump_posix_timers(parasite.pid, parasite)
    if misc["posix_timers"]:
        log.info("%d POSIX timers", len(misc["posix_timers"]))
    return misc


def dump_sched(tid):
    """thread_core_entry's sched_policy, sched_prio and sched_nice of one thread.  As criu does,
    the policy keeps the SCHED_RESET_ON_FORK bit (sched_setscheduler takes it back as it is),
    and the nice is saved whatever the policy: a real-time task keeps one for later."""
    try:
        policy = os.sched_getscheduler(tid)
        prio = os.sched_getparam(tid).sched_priority
        nice = os.getpriority(os.PRIO_PROCESS, tid)
    except ProcessLookupError:
        raise NoSuchProcess(tid) from None
    if policy & ~SCHED_RESET_ON_FORK == SCHED_DEADLINE:
        raise UnsupportedResource(tid, "SCHED_DEADLINE scheduling policy",
                                  hint="crpy does not save runtime/deadline/period yet; switch the "
                                       "task to another policy before the dump")
    return {"sched_policy": policy, "sched_prio": prio, "sched_nice": nice}
