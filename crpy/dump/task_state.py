"""Step: what only the task itself can tell, asked through the parasite: signal handlers, brk,
altstack, clear_child_tid, personality, dumpable, securebits, itimers, ...; and the per-thread
scheduling state (policy, SCHED_RESET_ON_FORK, rt priority, nice), which any task may read."""

import os
import time

from crpy.errors import DumpError, NoSuchProcess, UnsupportedResource
from crpy.log import log

NSIG = 64
SCHED_DEADLINE = 6
SCHED_RESET_ON_FORK = 0x40000000


class Asked:
    """What ask_task_state sent: the task's timers (crpy.dump.timers.read_timers) and when."""

    def __init__(self, timers, at):
        self.timers, self.at = timers, at


def ask_task_state(parasite):
    """Send the parasite every command the task's state needs (SIGACTS, MISC, TIMERS) and FINISH
    after them, in one go: it answers them in order while the dumper works on (fds, digests),
    and dump_sigactions/dump_misc then read the answers; no other command may follow before the
    cure.  -> Asked, for dump_misc and crpy.dump.timers.discount_frozen_time."""
    from crpy.dump import infect_channel as ch
    from crpy.dump.timers import read_timers

    timers = read_timers(parasite.pid)
    at = time.monotonic()                # the parasite reads the timers from now on, idle before
    parasite.ask(ch.SIGACTS)
    parasite.ask(ch.MISC)
    if timers:
        parasite.ask_timers([t["id"] for t in timers])
    parasite.ask(ch.FINISH)
    return Asked(timers, at)


def dump_sigactions(parasite):
    acts = list(parasite.sigactions())
    if len(acts) != NSIG:
        raise DumpError(f"the parasite returned {len(acts)} sigactions instead of {NSIG}")
    for sig, (handler, flags, _, mask) in enumerate(acts, 1):
        if handler:
            log.debug("sigaction %d: handler %#x flags %#x mask %#x", sig, handler, flags, mask)
    return acts


def dump_misc(parasite, asked=None):
    """The parasite's misc keys, plus "posix_timers": [posix_timer_entry].  asked: what
    ask_task_state sent (None: the commands are sent now)."""
    from crpy.dump.timers import dump_posix_timers

    misc = dict(parasite.misc())
    log.debug("Task misc: %s", misc)
    misc["posix_timers"] = dump_posix_timers(parasite.pid, parasite, None if asked is None else asked.timers)
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
