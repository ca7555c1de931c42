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
    misc = dict(parasite.misc())
    log.debug("Task misc: %s", misc)
    return misc
