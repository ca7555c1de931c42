"""crpy restore: read images -> fork the tree with the saved PIDs -> (each task) become the
task -> barrier -> go.

One named step per line; each step lives in its own module of crpy/restore:
    integrity   every image is what the dump wrote (crpy-digests), checked beside the loading,
                waited for before the first fork; or a refusal naming the image and the bytes;
                the page chunks a task reads are checked by that task as it reads them
                (pagecheck), before any task runs
    cpuinfo     this CPU has every XSAVE feature of the images (crpy.cpuinfo), or a refusal
    load, tree  read and check every image of every task, before anything is forked
    tree        every saved PID must be free; crpy's fds in the tasks go above keep_above
    fork        clone3 with set_tid (crpy.kernel.clone); each task forks its own children
    child       session, fs, fds, premapped memory (premap), sigframe, task_state, the
                restorer blob (blob, parasite/restorer.c) -- never returns
    tree        the barrier: all tasks at their restorer, then all go (or all killed)
    parent      the root's first moments, the pidfile, then detach or wait
"""

import fcntl
import os
import resource
import time

from crpy import log as crpy_log
from crpy import progress
from crpy.errors import CrpyError, RestoreError
from crpy.log import log


def run_restore(opts, images_checked=None):
    """Restore the task in opts.images_dir; its pid if opts.detach, else its exit status.
    images_checked: its integrity check, if the caller started it already (crpy.cli, early)."""
    log_file = opts.log_file
    if log_file and not os.path.isabs(log_file) and not os.path.isdir(opts.images_dir):
        log_file = None                    # no images dir to put it in: the error goes to stderr
    try:
        crpy_log.setup(opts.verbosity, log_file, opts.images_dir)
    except OSError as e:
        raise RestoreError(f"cannot open the log file {log_file}: {os.strerror(e.errno)}") from None
    from crpy.restore import integrity

    if images_checked is None:
        images_checked = integrity.start(opts.images_dir, opts.skip_integrity)
    try:
        return _restore(opts, images_checked)
    except Exception as e:
        told = images_checked.explain(e)   # a damaged image often fails to parse: name the damage
        if log_file and isinstance(told, CrpyError):
            log.error("restore failed: %s", told.one_line())
        if told is not e:
            raise told from None
        raise
    finally:
        _drop_mapped_ghosts()
        _drop_decoded_pages()


def _make_ghosts(images_dir):
    from crpy.resources import ghost

    ghost.materialize_all(images_dir)


def _drop_decoded_pages():
    """The decoded copies of compressed page images (crpy.images.pagecodec), if any."""
    import sys

    codec = sys.modules.get("crpy.images.pagecodec")    # imported only if an image was compressed
    if codec is not None:
        codec.release()


def _drop_mapped_ghosts():
    from crpy.resources import ghost

    ghost.unlink_materialized()


def _drop_link_remap_links():
    from crpy.resources import ghost

    ghost.unlink_linked()


def _drop_file_names():
    """Every task has its unlinked files open and mapped: their names go before any task runs."""
    _drop_mapped_ghosts()
    _drop_link_remap_links()


def _before_go(images_dir, pids):
    from crpy import faults

    faults.point("restore-before-go")
    _drop_file_names()
    _connections_live(images_dir, pids)


def _connections_live(images_dir, pids):
    """Every task has its sockets: restored TCP connections leave repair mode (only a dump
    with tcp-stream images has any: nothing is imported otherwise)."""
    if not any(name.startswith("tcp-stream-") for name in os.listdir(images_dir)):
        return
    from crpy.resources import tcp_stream

    tcp_stream.go_live(images_dir, pids)


def _configure_kinds(opts):
    if opts.tcp_close:                     # (the default needs no import)
        from crpy.resources import inet_tcp

        inet_tcp.configure_restore(tcp_close=True)
    elif _dumped_with_tcp_close(opts.images_dir):
        raise RestoreError(f"{opts.images_dir}: dumped with --tcp-close, its established TCP connections "
                           "were not saved", "restore with --tcp-close (they come back closed), as criu wants")


def _dumped_with_tcp_close(images_dir):
    """The inventory's tcp_close (criu's field); False when it cannot be read (load names why)."""
    from crpy.images import framing

    try:
        return framing.read_one(framing.image_path(images_dir, "inventory"), "inventory").tcp_close
    except (OSError, CrpyError):
        return False


def _restore(opts, images_checked):
    """load_tree -> check_pids_free -> fork the root (each task forks its children) ->
    barrier (all at their restorer, then go) -> settle -> pidfile -> detach or wait."""
    from crpy import cpuinfo, faults
    from crpy.restore import fork, parent, tree, tree_preload, tree_shmem

    t0 = time.perf_counter()
    tick = _StepClock()
    cpuinfo.check_images(opts.images_dir)
    tick("cpuinfo")
    _configure_kinds(opts)
    nodes = tree.load_tree(opts.images_dir)
    tick("load")
    root = nodes[0]
    log.info("read images of %d tasks under pid %d (%.3f s)", len(nodes), root.pid,
             time.perf_counter() - t0)
    faults.point("restore-after-load")
    if opts.detach and root.task.state.pdeath_sig:
        log.warning("pid %d had parent-death signal %d; not restored with -d (crpy, its new parent, "
                    "exits at once)", root.pid, root.task.state.pdeath_sig)
        root.task.state.pdeath_sig = 0
    pids = [n.pid for n in nodes]
    tree.check_pids_free(pids + tree.helper_pids(nodes) +
                         [t.tid for n in nodes if n.task for t in n.task.threads])
    tick("pids-free")
    _make_ghosts(opts.images_dir)          # once for the whole tree, before any fork
    tree_shmem.share_objects(nodes)
    faults.point("restore-after-ghosts")
    tick("ghosts-shmem")
    # which task checks which page chunks: once no step changes what a task reads (shared
    # objects are filled by crpy, not by their tasks); the check hashes the rest beside the preload
    if not (opts.check_pages_before_fork or opts.lazy_pages):   # lazy pages: read by the daemon
        images_checked.plan_pages(nodes)
    highest_fd = tree_preload.preload(nodes, opts.images_dir)
    tick("preload")
    images_checked.wait()                  # intact (or refused): nothing is forked before
    tick("integrity-wait")
    faults.point("restore-after-preload")
    keep_above = _keep_above(highest_fd)
    read_fd, write_fd = _report_pipe(keep_above)
    go_read, go_write = _go_pipe(keep_above)
    run = fork.TreeRun(write_fd, go_read, keep_above, nodes)
    if opts.lazy_pages:
        from crpy.restore import lazy

        run.lazy_socket = lazy.check_daemon(os.path.abspath(opts.images_dir))
    try:
        pid = fork.fork_node(root, run, close_in_child=(read_fd, go_write))
    except BaseException:
        for fd in (read_fd, write_fd, go_read, go_write):
            os.close(fd)
        raise
    os.close(write_fd)
    os.close(go_read)
    tick("fork-root")
    # only now: no thread of crpy's may run while it forks
    progress.start("restore", len(nodes), sum(n.task.pages_bytes for n in nodes if n.task), poll=_read_by(pids))
    barrier = tree.Barrier(read_fd, go_write, pid, pids, [n.pid for n in nodes if not n.zombie])
    try:
        barrier.run(before_go=lambda: _before_go(opts.images_dir, pids))
    finally:
        progress.finish()
    tick("tasks-ready-and-go")
    run.drop_core_dir()
    _drop_decoded_pages()                  # every task has read its pages by now
    parent.wait_main_threads_out(nodes)
    parent.wait_stopped(nodes)
    try:
        ended = parent.check_settled(pid)
    except RestoreError:
        barrier.kill_all()
        raise
    tick("settle")
    tick.log()
    log.info("%d tasks under pid %d restored in %.3f s", len(nodes), pid, time.perf_counter() - t0)
    _unlock_network(opts, pid)
    parent.write_pidfile(opts.pidfile, pid)
    if opts.detach:
        return pid
    return parent.wait_task(pid, ended)


class _StepClock:
    """Milliseconds per step of crpy's own side of the restore (perf_counter_ns), for one -v
    line; a task's own steps are logged by the task (crpy.restore.child, -v4)."""

    def __init__(self):
        self.ns, self.t = {}, time.perf_counter_ns()

    def __call__(self, name):
        now = time.perf_counter_ns()
        self.ns[name] = self.ns.get(name, 0) + now - self.t
        self.t = now

    def log(self):
        log.info("Step times (ms): %s", ", ".join(f"{k} {v / 1e6:.1f}" for k, v in self.ns.items()))


def _unlock_network(opts, root_pid):
    """The tree runs again: lift the network lock its dump left (crpy.netlock, named after the
    root's pid, which the restore gives back), if its images hold inet sockets (else there is
    none, and no firewall tool is run)."""
    from crpy.images.pb import fdinfo_pb2
    from crpy.resources.fdtable import read_files

    if any(e.type == fdinfo_pb2.INETSK for e in read_files(opts.images_dir).values()):
        from crpy import netlock                  # only now: start-up of the common case

        if netlock.release_after_restore(root_pid, opts.network_lock):
            log.info("network lock of pid %d lifted", root_pid)


def _read_by(pids):
    """For the progress line: bytes the tasks have read so far (premap reads their pages)."""
    def read():
        from crpy.errors import KernelError
        from crpy.kernel import proc

        total = 0
        for pid in pids:
            try:
                total += proc.read_chars(pid)
            except KernelError:
                pass
        return total

    return read


def _keep_above(highest_fd=None):
    """crpy's own fds in the child sit at this number and above; the task's below it.  Just above
    the highest fd of any task (highest_fd; rounded up to 64), so that every task's fd table stays
    small: each fork copies its parent's table, and the restorer's close_range walks it to its end
    (sized for fds near 20000, that cost ~0.2 ms in each task and in each fork of a tree).  At most
    128 below crpy's fd limit (a tree's shared objects are held above it too, a pipe takes three:
    16 ran out at 5 pipes), which is where they go when highest_fd is unknown (None)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = max(min(soft, 1 << 16) - 128, 64)
    if highest_fd is None:
        return ceiling
    return min(ceiling, max(64, -(-(highest_fd + 1) // 64) * 64))


def _go_pipe(keep_above):
    """(read end above keep_above, for the tasks; write end, crpy's)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    high = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, keep_above)
    os.close(r)
    return high, w


def _report_pipe(keep_above):
    """(read end, crpy's: low, select() takes no fd above 1023; write end above keep_above)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, keep_above)
    os.close(w)
    return r, high
