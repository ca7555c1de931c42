"""crpy restore: read images -> fork with the saved PID -> (child) become the task -> report.

One named step per line; each step lives in its own module of crpy/restore:
    load        read and check every image, before anything is forked
    (here)      the saved PID must be free; crpy's fds in the child go above keep_above
    clone       clone3 with set_tid (crpy.kernel.clone)
    child       session, fs, fds, premapped memory (premap), sigframe, task_state, the
                restorer blob (blob, parasite/restorer.c) -- never returns
    parent      the child's verdict, the pidfile, then detach or wait
"""

import fcntl
import os
import resource
import time

from crpy import log as crpy_log
from crpy.errors import CrpyError, RestoreError
from crpy.log import log


def run_restore(opts):
    """Restore the task in opts.images_dir; its pid if opts.detach, else its exit status."""
    log_file = opts.log_file
    if log_file and not os.path.isabs(log_file) and not os.path.isdir(opts.images_dir):
        log_file = None                    # no images dir to put it in: the error goes to stderr
    try:
        crpy_log.setup(opts.verbosity, log_file, opts.images_dir)
    except OSError as e:
        raise RestoreError(f"cannot open the log file {log_file}: {os.strerror(e.errno)}") from None
    try:
        return _restore(opts)
    except CrpyError as e:
        if log_file:
            log.error("restore failed: %s", e.one_line())
        raise


def _restore(opts):
    from crpy.restore import load, parent

    t0 = time.perf_counter()
    task = load.load_task(opts.images_dir)
    log.info("read images of pid %d: %d VMAs, %d bytes of pages (%.3f s)", task.pid, len(task.areas),
             task.pages_bytes, time.perf_counter() - t0)
    if opts.detach and task.state.pdeath_sig:
        log.warning("pid %d had parent-death signal %d; not restored with -d (crpy, its new parent, "
                    "exits at once)", task.pid, task.state.pdeath_sig)
        task.state.pdeath_sig = 0
    check_pid_free(task.pid)
    keep_above = _keep_above()
    read_fd, write_fd = _report_pipe(keep_above)
    pid = fork_task(task, read_fd, write_fd, keep_above)
    ended = parent.check_child(pid, read_fd)
    log.info("pid %d restored in %.3f s", pid, time.perf_counter() - t0)
    parent.write_pidfile(opts.pidfile, pid)
    if opts.detach:
        return pid
    return parent.wait_task(pid, ended)


ZOMBIE_WAIT = 5.0        # a just-dumped task may stay a zombie until its parent (init) reaps it


def check_pid_free(pid):
    """RestoreError if pid is in use; a zombie (the dumped task, not yet reaped) is waited for."""
    deadline = time.monotonic() + ZOMBIE_WAIT
    while _pid_state(pid) == "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    state = _pid_state(pid)
    if state is not None:
        what = "a zombie nobody reaps" if state == "Z" else "another task"
        raise RestoreError(f"pid {pid} is taken by {what}", f"stop the task holding pid {pid} and retry")


def _pid_state(pid):
    """The /proc/PID/stat state letter, or None when no task has that pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _keep_above():
    """crpy's own fds in the child sit at this number and above; the task's below it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(min(soft, 1 << 16) - 16, 64)


def _report_pipe(keep_above):
    r, w = os.pipe2(os.O_CLOEXEC)
    high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, keep_above)
    os.close(w)
    return r, high


def fork_task(task, read_fd, write_fd, keep_above):
    from crpy.kernel.clone import fork_with_pid

    parent = os.getpid()
    try:
        pid = fork_with_pid(task.pid)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        os.close(read_fd)
        from crpy.restore.child import run_child

        run_child(task, write_fd, keep_above, parent)     # never returns
    os.close(write_fd)
    log.debug("forked pid %d", pid)
    return pid
