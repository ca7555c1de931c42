"""The restoring parent's side once the tree runs: watch the root's first moments, write the
pidfile, detach or wait.  (How the tasks report, and the barrier: crpy.restore.tree.)

A task reports a failure as one line, "py MESSAGE" (Python steps) or "rst STEP ADDR ERRNO" (the
blob); reason() turns it into the message of one RestoreError.
"""

import os
import select
import signal

from crpy.errors import RestoreError
from crpy.log import log
from crpy.restore import blob

SETTLE_MS = 20          # how long a just-restored task is watched for an immediate death
SETTLE_POLL_S = 0.001   # how often its state is looked at meanwhile (asleep: settled)
# how long the tasks may take to leave the restorer (main threads) or stop again (stopped tasks):
# milliseconds, but a loaded machine may not run them for seconds (2 s was passed silently)
LEAVE_RESTORER_S = 10.0
RESTORER_MASK = ~((1 << 8) | (1 << 18)) & (1 << 64) - 1     # all blocked (SIGKILL, SIGSTOP cannot be)


def wait_main_threads_out(nodes):
    """Return only when the main thread of every multi-threaded task has left the restorer (its
    own signal mask is back).  Until then it blocks every signal while its other threads already
    run: a signal sent to the process then (crpy restore -d has returned, so a caller may send
    one) would go to another thread, which it would not have before the dump."""
    import time

    deadline = time.monotonic() + LEAVE_RESTORER_S
    for node in nodes:
        task = node.task
        if task is None or not task.threads or task.state.stopped or task.sigmask == RESTORER_MASK:
            continue
        while _blocked(node.pid) == RESTORER_MASK and time.monotonic() < deadline:
            time.sleep(0.0005)
        if _blocked(node.pid) == RESTORER_MASK:
            log.warning("pid %d: main thread still in the restorer after %.0f s", node.pid, LEAVE_RESTORER_S)


def check_settled(pid):
    """After every task reported: None while the root runs, its wait status if it ended on its
    own in the first moments; RestoreError if that end looks like a failed restore."""
    status = _died_early(pid)
    if status is not None and _looks_like_restore_failure(status):
        raise RestoreError(_describe_status(pid, status))
    return status


def wait_stopped(nodes):
    """Return only when every task that was stopped at the dump is stopped again (it stops
    itself in the restorer, after its report pipe closed): a SIGCONT sent before that stop
    would be lost, and the task would stay stopped for good."""
    import time

    from crpy.errors import NoSuchProcess
    from crpy.kernel import proc

    deadline = time.monotonic() + LEAVE_RESTORER_S
    for node in nodes:
        if node.task is None or not node.task.state.stopped:
            continue
        while time.monotonic() < deadline:
            try:
                if proc.stat(node.pid).state in ("T", "t", "Z", "X"):
                    break
            except NoSuchProcess:
                break
            time.sleep(0.0005)
        else:
            log.warning("pid %d: not stopped again after %.0f s", node.pid, LEAVE_RESTORER_S)


def _blocked(pid):
    """SigBlk of the task's main thread; None when it is gone."""
    from crpy.errors import NoSuchProcess
    from crpy.kernel import proc

    try:
        return proc.status(pid).sig_blk
    except NoSuchProcess:
        return None


def reason(line, code):
    if line.startswith("py "):
        return line[3:]
    return blob.describe_exit(code, line) or line


def _died_early(pid):
    """The wait status if the task ended right after the jump (it is reaped then), else None.
    Watched for SETTLE_MS, or less once the task sleeps or stops: the restorer has closed its
    report fd by now and never blocks after that, so a task asleep is in its own code, past
    the rt_sigreturn where a bad frame or bad registers would have killed it."""
    import time

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    try:
        deadline = time.monotonic() + SETTLE_MS / 1000
        while pidfd is not None:
            left = deadline - time.monotonic()
            if left <= 0 or select.select([pidfd], [], [], min(left, SETTLE_POLL_S))[0]:
                break
            if _asleep(pid):
                break
        wpid, status = os.waitpid(pid, os.WNOHANG)
        return status if wpid == pid else None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _asleep(pid):
    """The task sleeps (S) or is stopped (T, t); False when gone (a zombie is reaped by the caller)."""
    from crpy.errors import NoSuchProcess
    from crpy.kernel import proc

    try:
        return proc.stat(pid).state in ("S", "T", "t")
    except NoSuchProcess:
        return False


_FAULTS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGSYS)


def _looks_like_restore_failure(status):
    """A fault signal (bad frame or memory) or one of the blob's own exit codes."""
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status) in _FAULTS
    return blob.describe_exit(os.WEXITSTATUS(status)) is not None


def _describe_status(pid, status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return (f"pid {pid} was killed by {signal.Signals(sig).name} right after the restore "
                "(bad registers, frame or memory layout)")
    code = os.WEXITSTATUS(status)
    return blob.describe_exit(code) or f"pid {pid} exited with {code} right after the restore"


def write_pidfile(path, pid):
    if not path:
        return
    try:
        with open(path, "w") as f:
            f.write(f"{pid}\n")
    except OSError as e:
        raise RestoreError(f"cannot write pidfile {path}: {os.strerror(e.errno)}") from None


def wait_task(pid, status=None):
    """Wait for the restored task (unless its wait status is already known); its exit status,
    or 128+N if signal N killed it (as a shell does)."""
    while status is None or not (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        log.info("pid %d was killed by signal %d", pid, os.WTERMSIG(status))
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
