"""The network lock's janitor: a lock the dump took goes even when crpy is SIGKILLed half-way
(crpy.janitor runs it).  A lock is announced ("NAME" -> method) before its table is made, and
forgotten once crpy lifted it, or keeps it on purpose for the restore."""

from crpy.janitor import Janitor


def _lift_listed(listed):
    from crpy import netlock

    for name, method in listed.items():
        try:
            netlock.backend(method).remove(name)
        except Exception:                     # nothing to report to: crpy is gone
            pass


_janitor = Janitor(_lift_listed, reap_s=5.0, keep_stderr=True)
ready = _janitor.ready
forget = _janitor.forget
stop = _janitor.stop


def made(method, name):
    _janitor.made(name, method)
