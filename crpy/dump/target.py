"""First step: is the pid something crpy may dump?  Refuse a missing pid, crpy itself and its
ancestors (freezing one of them would freeze the dumper); before each task of the tree is
seized, what ptrace could not stop or what a restore would not give back (a task in vfork(),
memory shared with its parent, namespaces other than crpy's, a main thread gone while others
run); and, once the task is stopped, any shape this version does not handle (seccomp)."""

import os

from crpy.errors import DumpError, KernelError, NoSuchProcess, UnsupportedResource
from crpy.kernel import proc

# /proc/PID/ns links compared with crpy's own (the *_for_children ones: what the task's next
# child would be in, which a restore into crpy's namespaces would not keep either)
NAMESPACES = ("mnt", "net", "pid", "pid_for_children", "ipc", "uts", "user", "time",
              "time_for_children", "cgroup")
CLONE_VM, CLONE_VFORK = 0x100, 0x4000
NR_CLONE, NR_VFORK, NR_CLONE3 = 56, 58, 435
KCMP_VM = 1
STOP_SIGNALS = (19, 20, 21, 22)      # SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: a group-stop
_own_namespaces = {}                 # crpy's, read once per dump (check_target empties it), not per task


def check_target(pid):
    _own_namespaces.clear()
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
    if stop_signal in STOP_SIGNALS and status.threads > 1:
        # the parasite's injected calls in one thread end in a trap while the group stays stopped
        raise UnsupportedResource(pid, "stopped task with several threads",
                                  target=f"({status.threads} threads, stopped by signal {stop_signal})",
                                  hint="send it SIGCONT and dump it running, or stop a single-threaded task")


def check_before_seize(pid, stat=None):
    """UnsupportedResource for a task crpy must not seize or cannot restore, found from /proc
    alone (nothing is touched): every thread is looked at.  stat: its proc.stat, if the caller
    has just read it (its state, thread count and parent are all this needs: /proc/PID/stat is
    read and parsed in half the time of status, for every task of a tree)."""
    st = proc.stat(pid) if stat is None else stat
    if st.state.startswith("Z") and st.num_threads > 1:
        raise UnsupportedResource(pid, "thread group whose main thread has exited",
                                  target=f"({st.num_threads - 1} other thread(s) still running)",
                                  hint="crpy restores a task only with its main thread alive")
    check_namespaces(pid)
    for tid in proc.tasks(pid):
        try:
            check_not_in_vfork(pid, tid)
        except NoSuchProcess:
            if tid == pid:
                raise                   # else a thread that just exited: nothing to check

    check_own_mm(pid, st.ppid)


def check_namespaces(pid):
    """Until crpy restores namespaces, a task must live in crpy's own."""
    if not _own_namespaces:
        _own_namespaces.update(proc.ns_inodes("self"))
    own, its = _own_namespaces, proc.ns_inodes(pid)
    for name in NAMESPACES:
        if name in own and its.get(name, own[name]) != own[name]:
            kind = name.replace("_for_children", "")
            which = f"{kind} namespace for its children" if name != kind else f"{kind} namespace"
            raise UnsupportedResource(pid, which, target=f"{kind}:[{its[name]}] (crpy is in {kind}:[{own[name]}])",
                                      hint="crpy dumps tasks in its own namespaces only; run it inside "
                                           "the task's namespaces (nsenter -t PID -a)")


def check_not_in_vfork(pid, tid):
    """A thread blocked in vfork() (or clone with CLONE_VFORK, as posix_spawn does) stops for
    ptrace only once its child has exec'd or exited: seizing it would hang."""
    call = proc.syscall(tid)
    if not call or call[0] not in (NR_VFORK, NR_CLONE, NR_CLONE3):
        return
    nr, args = call
    if nr == NR_CLONE3:
        try:
            flags = int.from_bytes(proc.read_mem(pid, args[0], 8), "little")
        except (KernelError, OSError):
            flags = CLONE_VFORK          # unreadable: say what it may be rather than hang
    else:
        flags = CLONE_VFORK if nr == NR_VFORK else args[0]
    if flags & CLONE_VFORK:
        who = f"pid {pid}" if tid == pid else f"thread {tid} of pid {pid}"
        raise UnsupportedResource(pid, "vfork() in progress",
                                  target=f"({who} waits until its child execs or exits)",
                                  hint="dump once the vfork child has exec'd or exited")


def check_own_mm(pid, ppid):
    """A child created with CLONE_VM (a vfork child that has not exec'd yet) shares its parent's
    memory; a restore would give each its own copy."""
    from crpy.kernel.syscalls import NR, sys_call

    if ppid <= 1:
        return
    try:
        same = sys_call(NR.kcmp, pid, ppid, KCMP_VM, 0, 0, what="kcmp") == 0
    except KernelError:
        return                          # no kcmp, or the parent is gone: nothing shared to lose
    if same:
        raise UnsupportedResource(pid, "address space shared with its parent",
                                  target=f"(pid {ppid}: a vfork child not exec'd yet, or CLONE_VM)",
                                  hint="dump once the child has exec'd or exited")
