"""Step: what only the task itself can tell, asked through the parasite: signal handlers, brk,
altstack, clear_child_tid, personality, dumpable, securebits, itimers, ..."""

from crpy.errors import DumpError
from crpy.log import log

NSIG = 64


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
