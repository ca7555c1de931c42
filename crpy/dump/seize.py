"""Step: seize the task (PTRACE_SEIZE + INTERRUPT) and, on the way out, detach it exactly as
it was, unless a later step killed it on purpose."""

import contextlib
import time

from crpy.log import log


class SeizedTask:
    def __init__(self, pid, stop_signal):
        self.pid = pid
        self.stop_signal = stop_signal   # SIGTRAP, or SIGSTOP & co. when it was in a group-stop
        self.killed = False              # set by the kill step: nothing to detach then
        self.threads = []                # the other threads' TIDs, seized too (crpy.dump.threads)
        self.frozen_at = time.monotonic()  # timers read later are given this time back


@contextlib.contextmanager
def seized(pid, interrupted=False):
    """interrupted: PTRACE_SEIZE and INTERRUPT were sent already (crpy.dump.tree seizes the
    children of a pass all at once, so they stop in parallel): only the stop is collected."""
    from crpy.kernel import ptrace

    log.info("Seizing task %d", pid)
    from crpy.dump.threads import detach_threads, seize_threads

    task = SeizedTask(pid, ptrace.wait_event_stop(pid) if interrupted else ptrace.seize(pid))
    try:
        seize_threads(pid, task.threads)
        yield task
    finally:
        if not task.killed:
            detach_threads(task.threads)
            _detach(pid)


def _detach(pid):
    from crpy.errors import CrpyError
    from crpy.kernel import ptrace

    try:
        ptrace.detach(pid)
        log.info("Task %d detached", pid)
    except CrpyError as e:               # gone already: nothing left to put back
        log.warning("Detaching %d: %s", pid, e.one_line())
