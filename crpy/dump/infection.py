"""Steps: infect the stopped task with the parasite, and cure it again.

`infected(pid)` is a context manager: whatever happens inside (an error, Ctrl-C, a fault point),
the task is cured on the way out; cure() inside the block cures it early, once."""

import contextlib

from crpy import faults
from crpy.log import log


class Infection:
    def __init__(self, parasite):
        self.parasite = parasite
        self.cured = False

    def begin_cure(self):
        """The task is let stop for the cure while the caller works on (Parasite.begin_cure)."""
        if not self.cured:
            self.parasite.begin_cure()

    def cure(self):
        if not self.cured:
            self.cured = True
            self.parasite.cure()
            log.info("Parasite cured")


def cure_all(infections):
    """Infection.cure of several tasks: those whose cure began (Infection.begin_cure) at once,
    their stops taken side by side (crpy.dump.parasite.Parasite.cure_all), any other one by one."""
    from crpy.dump.parasite import Parasite

    for inf in infections:
        if not inf.cured and not inf.parasite.cure_begun:
            inf.cure()
    together = [inf for inf in infections if not inf.cured]
    for inf in together:
        inf.cured = True               # a failure unloads them all by force already
    Parasite.cure_all([inf.parasite for inf in together])
    log.info("Parasites of %d tasks cured", len(together))


def infected_all(tasks, cleanup):
    """infected() of several tasks at once, [(pid, facts)] -> [Infection] (their stops overlap:
    crpy.dump.parasite.Parasite.infect_all); each one is cured on the way out of `cleanup`
    (a contextlib.ExitStack) unless cured before."""
    from crpy.dump.parasite import Parasite

    for pid, _ in tasks:
        log.info("Infecting task %d", pid)
    parasites = Parasite.infect_all([(pid, facts.vmas, facts.status.seccomp) for pid, facts in tasks])
    infections = [Infection(p) for p in parasites]
    for inf in infections:
        cleanup.push(_cure_on_exit(inf))
    for pid, _ in tasks:
        faults.point("after-infect", pid)
    return infections


def _cure_on_exit(inf):
    def exit_(exc_type, exc, tb):
        if not inf.cured:
            try:
                inf.cure()
            except BaseException as e:        # keep the first error; this one goes to the log
                log.error("Curing task %d failed: %s", inf.parasite.pid, e)
                raise
        return False
    return exit_


@contextlib.contextmanager
def infected(pid, facts=None):
    """facts: the task's crpy.dump.facts.TaskFacts, read since it stopped: its maps and seccomp
    mode are not read again."""
    from crpy.dump.parasite import Parasite

    log.info("Infecting task %d", pid)
    known = {} if facts is None else {"vmas": facts.vmas, "seccomp": facts.status.seccomp}
    inf = Infection(Parasite.infect(pid, **known))
    try:
        faults.point("after-infect", pid)
        yield inf
    finally:
        if not inf.cured:
            try:
                inf.cure()
            except BaseException as e:        # keep the first error; this one goes to the log
                log.error("Curing task %d failed: %s", pid, e)
                raise
