"""First step: is the pid something crpy may dump?  Refuse a missing pid, crpy itself and its
ancestors (freezing one of them would freeze the dumper), and, once the task is stopped, any
shape this version does not handle (threads, children)."""

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
    """Only a running single-threaded task without children, for now (checked while seized)."""
    import signal

    if stop_signal in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        raise UnsupportedResource(pid, "stopped task", target=f"(in a group-stop by signal {stop_signal})",
                                  hint="crpy cannot dump a stopped task yet; send it SIGCONT first")
    if status.seccomp:
        mode = {1: "strict", 2: "filter"}.get(status.seccomp, str(status.seccomp))
        raise UnsupportedResource(pid, "seccomp", target=f"(mode {mode})",
                                  hint="crpy cannot dump a task under seccomp yet")
    if status.threads > 1:
        raise UnsupportedResource(pid, "multi-threaded task", target=f"({status.threads} threads)",
                                  hint="crpy dumps single-threaded tasks only, for now")
    kids = proc.children(pid)
    if kids:
        listed = ",".join(map(str, kids[:8])) + ("..." if len(kids) > 8 else "")
        raise UnsupportedResource(pid, "process tree", target=f"(children {listed})",
                                  hint="crpy dumps a single task without children, for now")
