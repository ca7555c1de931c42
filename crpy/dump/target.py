"""First step: is the pid something crpy may dump?  Refuse a missing pid, crpy itself and its
ancestors (freezing one of them would freeze the dumper), and, once the task is stopped, any
shape this version does not handle (seccomp, group-stop)."""

import os

from crpy.errors import DumpError, NoSuchProcess, UnsupportedResource
from crpy.kernel import proc


def check_target(pid):
    if pid <= 0 or not proc.exists(pid):
        raise NoSuchProcess(pid)
    me, chain = os.getpid(), []
    p = me
    while p > 1:
        chain.append(p)
        try:
            p = proc.stat(p).ppid
        except NoSuchProcess:
            break
    if pid == me:
        raise DumpError(f"refusing to dump pid {pid}: it is crpy itself",
                        "give the pid of another process")
    if pid in chain or pid == 1:
        raise DumpError(f"refusing to dump pid {pid}: it is an ancestor of crpy (pid {me})",
                        "dumping it would freeze the dumper; run crpy from outside that tree")


def check_shape(pid, status, stop_signal):
    """What this version refuses, checked while seized (a stopped task is dumped stopped;
    threads and children are the tree's business, crpy.dump.tree)."""
    if status.seccomp:
        mode = {1: "strict", 2: "filter"}.get(status.seccomp, str(status.seccomp))
        raise UnsupportedResource(pid, "seccomp", target=f"(mode {mode})",
                                  hint="crpy cannot dump a task under seccomp yet")
