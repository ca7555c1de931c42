"""The dump pipeline, one step per line (DESIGN.md).  Tree steps run once, task steps per task:

  seize_tree (every descendant, until stable) ─► for each task: /proc facts (unsupported fds,
  VMAs refused here) ─► infect ─► pages, fds, sigactions, misc ─► cure ─► registers, mm, creds
  ─► task images ─► pstree, inventory, files ─► kill_tree (or --leave-running).  The tasks go
  BATCH at a time: infected together and cured together, their stops overlap.

Every step lives in its own module of crpy.dump.  Cleanup is a context-manager stack: whatever
fails after the seize (an error, Ctrl-C, a fault point), the parasite is cured and the task
detached exactly as it was.
"""

import contextlib
import itertools
import os
import time

from crpy import progress
from crpy.errors import CrpyError, DumpError
from crpy.log import log, setup
from crpy.record import dataclass


class _Clock:
    """Time spent per step, summed over the tasks of a tree: stats["time"] in seconds, and one
    -v log line of milliseconds per step, wall (perf_counter_ns) / crpy's CPU (process_time_ns:
    under a loaded machine the wall time swings, the CPU time shows crpy's own work)."""

    def __init__(self, stats):
        self.stats, self.ns, self.cpu = stats, {}, {}
        self.t, self.c = time.perf_counter_ns(), time.process_time_ns()

    def __call__(self, name):
        now, cpu = time.perf_counter_ns(), time.process_time_ns()
        self.ns[name] = self.ns.get(name, 0) + now - self.t
        self.cpu[name] = self.cpu.get(name, 0) + cpu - self.c
        self.t, self.c = now, cpu

    def close(self):
        self.stats["time"] = {k: round(v / 1e9, 6) for k, v in self.ns.items()}
        log.info("Step times (ms wall/cpu, all tasks): %s",
                 ", ".join(f"{k} {v / 1e6:.1f}/{self.cpu[k] / 1e6:.1f}" for k, v in self.ns.items()))


def run_dump(opts):
    """Dump task opts.pid into opts.images_dir; returns a dict of statistics."""
    _prepare_dir(opts.images_dir)
    try:
        setup(opts.verbosity, opts.log_file, opts.images_dir)
    except OSError as e:
        raise DumpError(f"cannot open the log file {opts.log_file}: {e.strerror or e}") from None
    log.info("Dumping task %d into %s", opts.pid, opts.images_dir)
    try:
        try:
            from crpy.pageserver import session

            with session(opts):           # --page-server: page data goes to the server
                if opts.pre_dump:
                    from crpy.dump.predump import pre_dump

                    return pre_dump(opts)
                return _dump(opts)
        except OSError as e:              # the task is cured and detached by now; say it in one line
            where = f" ({e.filename})" if e.filename else ""
            raise DumpError(f"dump of pid {opts.pid} failed: {e.strerror or e}{where}") from e
    except CrpyError as e:
        if opts.log_file:                 # on stderr the CLI prints it once, as one line
            log.error("Dump of %d failed: %s", opts.pid, e.one_line())
        raise
    except KeyboardInterrupt:
        if opts.log_file:
            log.error("Dump of %d interrupted; the task was left as it was", opts.pid)
        raise


def _dump(opts):
    """The tree steps, run once: seize_tree -> dump_task per task -> tree images -> kill_tree."""
    from crpy import faults, resources
    from crpy.dump.files import FileTable
    from crpy.dump.images import begin_image_digests, write_image_digests, write_tree_images
    from crpy.dump.target import check_target
    from crpy.dump.tree import kill_tree, pstree_entries, seize_tree
    from crpy.resources import ghost

    pid = opts.pid
    stats = {"pid": pid}
    tick = _Clock(stats)
    resources.configure_dump(opts.file_locks, opts.link_remap, opts.shell_job, opts.ghost_limit,
                             opts.tcp_established, opts.skip_in_flight, opts.tcp_close)
    check_target(pid)
    track = _tracking(opts)
    # --lazy-pages: the pages images are filled after the dump; its caller writes crpy-digests then
    begin_image_digests(opts.images_dir, skip=opts.skip_integrity or opts.lazy_pages)
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(ghost.links_removed_on_failure())    # unwound last: after the detach
        cleanup.push(_network_lock(opts))
        if track is not None:
            cleanup.callback(track.abandon)      # the final dump ends the tracking, failed or not
            track.begin()
        tasks = cleanup.enter_context(seize_tree(pid))
        cleanup.callback(_finish_tcp, killed=False)   # a failed dump: connections go on
        resources.set_dump_tree([t.pid for t in tasks if not t.zombie])
        pages_ids = itertools.count(1)
        tree = _TreeDump(opts.images_dir, FileTable(opts.images_dir, pages_ids), pages_ids, set(), tasks, track,
                         _held_pages(opts, cleanup))
        faults.point("after-seize")
        tick("seize")
        progress.start("dump", len(tasks))
        cleanup.callback(progress.finish)
        for first in range(0, len(tasks), BATCH):
            _dump_tasks(tree, tasks[first:first + BATCH], first + 1, stats, tick, cleanup)
        write_tree_images(opts.images_dir, pstree_entries(tasks), tree.files.entries, opts.tcp_close)
        faults.point("after-tree-images")
        tick("tree-images")
        if opts.compress:
            from crpy.dump.compress import compress_page_images

            compress_page_images(opts.images_dir, stats)
            tick("compress")
        write_image_digests(opts.images_dir)
        faults.point("after-images")
        tick("digests")
        if not opts.leave_running:
            kill_tree(tasks)
            _finish_tcp(killed=True)             # closed in repair mode: no FIN, no RST
        tick("kill")
    tick.close()
    stats["tasks"] = len(tasks)
    log.info("Dump of %d finished: %s", pid, stats)
    if not (opts.page_server or opts.lazy_pages):      # else the pages went elsewhere
        _hint_small_pages_tmpfs(opts.images_dir, stats.get("pages_bytes", 0))
    return stats


HINT_PAGES_BYTES = 128 << 20      # below this the page step is too short to be worth a word


def _hint_small_pages_tmpfs(images_dir, pages_bytes):
    """A -v line when the page images went into a tmpfs without huge pages: that tmpfs, not
    crpy, sets the page step's pace (crpy.kernel.tmpfs)."""
    if pages_bytes < HINT_PAGES_BYTES:
        return
    from crpy.kernel.tmpfs import huge_mode

    if huge_mode(images_dir) in ("never", "advise"):
        log.info("Hint: %s is a tmpfs without huge pages, which fills page images 4 KiB at a time; "
                 "on a tmpfs mounted with -o huge=within_size the page step runs up to 3x faster (README)", images_dir)


def _network_lock(opts):
    """The dump's network lock (crpy.netlock: taken by the socket kinds as they meet connections);
    the exit function that, after the tasks are detached or killed, keeps it for the restore or
    lifts it (--leave-running, a failure)."""
    from crpy import netlock

    netlock.begin_dump(opts.pid, opts.network_lock, opts.leave_running)

    def end(exc_type, exc, tb):
        netlock.end_dump(exc_type is None, opts.leave_running)
        return False
    return end


@dataclass
class _TreeDump:
    """What the tasks of one dump share: the images dir, files.img, pages-N.img numbers and
    the anonymous shared objects written already."""
    images_dir: str
    files: object
    pages_ids: object
    shmem_done: set
    tasks: list
    track: object = None              # crpy.dump.memtrack.Tracking with --track-mem --prev-images-dir
    held: object = None               # crpy.dump.held_pages.HeldDump with --lazy-pages

    def __post_init__(self):
        self.by_pid = {t.pid: t for t in self.tasks}


BATCH = 16        # tasks infected and cured side by side: their stops overlap (each holds a socket)


def _dump_tasks(tree, batch, n, stats, tick, cleanup):
    """The per-task steps of a batch of tasks (n: the first one's index): each one's facts, the
    infection of all at once, each one's pages, fds and state, the cure of all at once, each
    one's images.  Done side by side, the infections and cures wait for the scheduler once per
    step, not once per task and step.  The infections are in `cleanup`: a failure cures them on
    the way out."""
    from crpy import faults
    from crpy.dump.infection import cure_all, infected_all

    collected = []
    for i, task in enumerate(batch, n):
        got = _collect_task(tree, task, i, tick)
        if got is None:
            progress.task_done()              # a zombie, dumped already
        else:
            collected.append(got)
    if not collected:
        return
    infections = infected_all([(got.task.pid, got.facts) for got in collected], cleanup)
    tick("infect")
    rests = [_parasite_steps(tree, got, infection, stats, tick) for got, infection in zip(collected, infections)]
    cure_all(infections)
    tick("cure")
    for got, rest in zip(collected, rests):
        faults.point("after-cure", got.task.pid)
        rest()
        progress.task_done()


@dataclass
class _Collected:
    """A task's facts and plans, read before its infection."""
    task: object
    n: int
    facts: object
    exe_id: int
    plans: list
    page_plan: object


def _collect_task(tree, task, n, tick):
    """/proc facts -> vmas -> pages scan of one task: a _Collected; None for a zombie (its images
    are written here)."""
    from crpy import faults
    from crpy.dump.facts import collect_facts
    from crpy.dump.images import write_task_images
    from crpy.dump.mm import exe_file_id
    from crpy.dump.pages import PAGE, scan_pages
    from crpy.dump.tree import zombie_core
    from crpy.dump.tree_cow import split_cow_runs
    from crpy.dump.vmas import plan_vmas

    pid, files = task.pid, tree.files
    if task.zombie:
        write_task_images(tree.images_dir, pid, n, {"core": zombie_core(task)})
        return None
    facts = collect_facts(pid, task.seized.stop_signal)
    task.files_id = _files_id(tree, task, n, facts.stat.ppid)
    exe_id = exe_file_id(facts, files)
    plans = plan_vmas(facts, files)
    page_plan = scan_pages(pid, plans)
    progress.add_total(page_plan.nr_pages * PAGE)
    parent = tree.by_pid.get(task.ppid)
    if tree.track is not None:          # PE_PARENT then means: in the previous round's images
        tree.track.check_task(pid, facts)
        tree.track.select(pid, facts, page_plan)
    else:
        from crpy.dump.memtrack import drop_wp_markers

        drop_wp_markers(pid, facts, page_plan)  # a task a pre-dump still tracks: markers are no data
        if parent is not None and parent.plans is not None:
            split_cow_runs(pid, parent.pid, plans, parent.plans, page_plan)
    task.plans = plans
    faults.point("after-collect", pid)
    tick("collect")
    return _Collected(task, n, facts, exe_id, plans, page_plan)


def _parasite_steps(tree, got, infection, stats, tick):
    """pages, fds, fs, sigactions, misc of an infected task, then its cure begins; -> rest(), the
    steps after its cure."""
    from crpy import faults
    from crpy.dump.fds import dump_fds
    from crpy.dump.fs import dump_fs
    from crpy.dump.images import digest_written_images
    from crpy.dump.pages import dump_pages
    from crpy.dump.preload import start_preload
    from crpy.dump.task_state import ask_task_state, dump_misc, dump_sigactions
    from crpy.dump.timers import discount_frozen_time

    task, facts, images_dir, files = got.task, got.facts, tree.images_dir, tree.files
    pid = task.pid
    start_preload()                   # imports ride along while the pages move GIL-free
    written = dump_pages(infection.parasite, images_dir, pid, got.page_plan, tree.pages_ids, tree.shmem_done,
                         tree.held)
    _add(stats, written)
    asked = ask_task_state(infection.parasite)   # answered while the digests and fds are done here
    tick("pages")
    # hashed beside the rest of the dump (private pages were, as they were written)
    digest_written_images(images_dir, written["shmem_bytes"])
    faults.point("after-pages", pid)
    tick("digests")
    sigactions = dump_sigactions(infection.parasite)
    misc = dump_misc(infection.parasite, asked)
    discount_frozen_time(misc, task.seized.frozen_at, asked.at)
    infection.begin_cure()            # the task stops for the cure while its fds are done here
    fdinfo = dump_fds(facts, files)
    fs = dump_fs(facts, files)
    faults.point("after-fds", pid)
    faults.point("before-cure", pid)
    tick("parasite-cmds")
    return lambda: _task_images(tree, task, got.n, stats, tick, facts, infection, got.plans, got.page_plan,
                                misc, got.exe_id, sigactions, fs, fdinfo)


def _task_images(tree, task, n, stats, tick, facts, infection, plans, page_plan, misc, exe_id, sigactions, fs,
                 fdinfo):
    """The per-task steps after the cure: regs, mm, creds, core -> task images."""
    from crpy import faults
    from crpy.dump.core import core_entry
    from crpy.dump.creds import dump_creds
    from crpy.dump.images import write_task_images
    from crpy.dump.mm import mm_entry
    from crpy.dump.regs import dump_regs
    from crpy.dump.threads import dump_threads

    pid, images_dir = task.pid, tree.images_dir
    regs = dump_regs(pid, infection.parasite.saved)
    _drop_stop_signal(regs, task.seized.stop_signal)
    mm = mm_entry(facts, plans, page_plan, misc, exe_id)
    creds = dump_creds(facts.status, misc)
    core = core_entry(facts, regs, sigactions, misc, creds, task.seized.stop_signal)
    task.pgid, task.sid = misc.get("pgid", facts.stat.pgrp), misc.get("sid", facts.stat.session)
    tick("regs-build")
    write_task_images(images_dir, pid, n, {"core": core, "mm": mm, "fs": fs, "fdinfo": fdinfo}, task.files_id)
    dump_threads(images_dir, task.seized.threads, creds)
    faults.point("after-task-images", pid)
    tick("images")
    _add(stats, {"vmas": len(plans), "fds": len(fdinfo), "pages": page_plan.nr_pages})


def _finish_tcp(killed):
    """The established TCP connections the dump put in repair mode (crpy.resources.tcp_stream)."""
    import sys

    if "crpy.resources.tcp_stream" in sys.modules:
        sys.modules["crpy.resources.tcp_stream"].finish_dump(killed)


def _held_pages(opts, cleanup):
    """--lazy-pages: the HeldDump the pages go to (crpy.dump.held_pages), released if the dump fails."""
    if not opts.lazy_pages:
        return None
    from crpy.dump import held_pages

    def release(exc_type, exc, tb):
        if exc_type is not None:
            held_pages.abandon(opts.images_dir)
        return False
    cleanup.push(release)
    return held_pages.begin(opts.images_dir)


def _tracking(opts):
    """The memory tracking a dump --track-mem --prev-images-dir ends (crpy.dump.memtrack)."""
    if not opts.prev_images_dir:
        return None
    from crpy.dump.memtrack import Tracking, link_parent, prev_dir

    link_parent(opts.images_dir, opts.prev_images_dir)
    # without --track-mem every page is dumped, but PE_PARENT still means the parent images here
    prev = prev_dir(opts.images_dir, opts.prev_images_dir) if opts.track_mem else None
    return Tracking(opts.images_dir, opts.pid, prev, keep=False)


def _files_id(tree, task, n, real_ppid):
    """ids.files_id of a task: its own (n), or its parent's when it shares the parent's fd table
    (CLONE_FILES): the restore then clones it with CLONE_FILES, and only a parent can do that."""
    from crpy.errors import UnsupportedResource
    from crpy.resources.fdtable import refuse_table_shared_outside, table_owner

    owner = table_owner(task.pid)
    if owner is None:
        if n == 1:
            refuse_table_shared_outside(task.pid, real_ppid)
        return n
    parent = tree.by_pid.get(task.ppid)
    if parent is None or parent.files_id != tree.by_pid[owner].files_id:
        raise UnsupportedResource(task.pid, f"fd table shared with pid {owner} (CLONE_FILES), not with its parent",
                                  hint="crpy restores an fd table shared between a task and its parent only")
    return parent.files_id


def _drop_stop_signal(regs, stop_signal):
    """A group-stopped task shows its stop signal queued again once the parasite has run (it
    was resumed from the stop); the stop itself is in the core (task_state, stop_signo), so the
    queued copy is dropped: restored, it would stop the task inside the restorer."""
    import signal

    if stop_signal not in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        return
    for name in ("pending_shared", "pending"):
        queue = getattr(regs, name, None)
        if queue:
            setattr(regs, name, [s for s in queue if int.from_bytes(bytes(s[:4]), "little") != stop_signal])


def _add(stats, counts):
    for k, v in counts.items():
        stats[k] = stats.get(k, 0) + v


def _prepare_dir(images_dir):
    from crpy.images.create import make_images_dir

    try:
        make_images_dir(images_dir)
    except OSError as e:
        raise DumpError(f"cannot use images directory {images_dir}: {e.strerror}",
                        "give a writable directory with -D") from None
