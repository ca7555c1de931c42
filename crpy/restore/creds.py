"""Restore: the task's credentials (creds_entry of its core): uids, gids, groups, capability
sets (inheritable, permitted, effective, bounding, ambient) and securebits.

crpy restores as root and the task may have run as another user with fewer capabilities (or, not
root, a task of its own ids with no more capabilities than crpy: it only drops some): the
switch happens in the restorer blob, in every thread, as late as possible (after the memory, the
threads, the timers and the signals, which need root).  Here: read them, check before any fork
that crpy can give them (it can only drop capabilities, never add one it lacks), and fill
struct rst_creds, left unset when the task's creds are crpy's own.
"""

import functools
import os

from crpy.errors import RestoreError
from crpy.record import dataclass

CAP_LAST_CAP_PATH = "/proc/sys/kernel/cap_last_cap"


@dataclass
class Creds:
    uids: tuple              # (uid, euid, suid, fsuid)
    gids: tuple              # (gid, egid, sgid, fsgid)
    groups: tuple
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    secbits: int


def _mask(words):
    words = list(words)
    return sum(w << (32 * i) for i, w in enumerate(words[:2]))


def from_entry(c):
    return Creds(uids=(c.uid, c.euid, c.suid, c.fsuid), gids=(c.gid, c.egid, c.sgid, c.fsgid),
                 groups=tuple(c.groups), cap_inh=_mask(c.cap_inh), cap_prm=_mask(c.cap_prm),
                 cap_eff=_mask(c.cap_eff), cap_bnd=_mask(c.cap_bnd), cap_amb=_mask(c.cap_amb),
                 secbits=c.secbits)


@functools.lru_cache(maxsize=1)
def own():
    """crpy's own creds, as /proc/self/status shows them (read once: checked for every task)."""
    from crpy.kernel import proc

    st = proc.status(os.getpid())
    return Creds(uids=tuple(st.uids), gids=tuple(st.gids), groups=tuple(st.groups), cap_inh=st.cap_inh,
                 cap_prm=st.cap_prm, cap_eff=st.cap_eff, cap_bnd=st.cap_bnd, cap_amb=st.cap_amb,
                 secbits=_own_securebits())


def _own_securebits():
    import ctypes

    return max(ctypes.CDLL(None).prctl(27, 0, 0, 0, 0), 0)      # PR_GET_SECUREBITS


def same_as_own(creds, mine):
    return (creds.uids == mine.uids and creds.gids == mine.gids and
            sorted(creds.groups) == sorted(mine.groups) and creds.cap_inh == mine.cap_inh and
            creds.cap_prm == mine.cap_prm and creds.cap_eff == mine.cap_eff and
            creds.cap_bnd == mine.cap_bnd and creds.cap_amb == mine.cap_amb and
            creds.secbits == mine.secbits)


def check(pid, creds, mine=None):
    """RestoreError (before any fork) for creds crpy cannot give."""
    if creds is None:
        return
    mine = mine or own()
    if same_as_own(creds, mine):
        return
    if mine.uids[1] != 0 and not _own_ids(creds, mine):
        raise RestoreError(f"pid {pid} ran as uid {creds.uids[0]} with its own capabilities; switching "
                           "credentials needs crpy to run as root", "run crpy restore as root")
    for name in ("cap_prm", "cap_bnd", "cap_inh", "cap_amb"):
        if name == "cap_bnd" and mine.uids[1] != 0:
            continue                      # the same as crpy's: _own_ids
        extra = getattr(creds, name) & ~mine.cap_prm
        if extra:
            caps = ",".join(str(b) for b in range(64) if extra >> b & 1)
            raise RestoreError(f"pid {pid} had capabilities crpy lacks ({name} bits {caps})",
                               "restore it where crpy has at least the task's capabilities")
    if len(creds.groups) > 256:
        raise RestoreError(f"pid {pid} has {len(creds.groups)} supplementary groups; crpy restores up to 256")


def _own_ids(creds, mine):
    """The task ran with crpy's own ids, groups, securebits and bounding set: an unprivileged
    crpy restores it by dropping capabilities only (the restorer's switch_creds)."""
    return (creds.uids == mine.uids and creds.gids == mine.gids and sorted(creds.groups) == sorted(mine.groups)
            and creds.secbits == mine.secbits and creds.cap_bnd == mine.cap_bnd)


def fill(ffi, a, creds, dumpable):
    """struct rst_creds; `set` stays 0 when the task's creds are crpy's own."""
    if creds is None or same_as_own(creds, own()):
        return
    c = a.creds
    c.set, c.secbits = 1, creds.secbits
    c.uid, c.euid, c.suid, c.fsuid = creds.uids
    c.gid, c.egid, c.sgid, c.fsgid = creds.gids
    c.cap_inh, c.cap_prm, c.cap_eff = creds.cap_inh, creds.cap_prm, creds.cap_eff
    c.cap_bnd, c.cap_amb = creds.cap_bnd, creds.cap_amb
    with open(CAP_LAST_CAP_PATH) as f:
        c.last_cap = int(f.read())
    c.dumpable = dumpable if dumpable in (0, 1, 2) else -1
    for i, g in enumerate(creds.groups):
        c.groups[i] = g
    c.ngroups = len(creds.groups)
