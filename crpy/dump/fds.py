"""Step: the fd table (facts were read before the parasite went in; see crpy.resources.fdtable)."""

from crpy.log import log


def dump_fds(facts, files):
    from crpy.resources.fdtable import dump_fds as fdtable_dump

    entries = fdtable_dump(facts.fds, files)
    for f in facts.fds:
        log.debug("fd %d: %s %s pos %d flags %#o", f.fd, f.kind, f.target, f.info.pos, f.info.flags)
    return entries
