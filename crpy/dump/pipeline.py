"""The dump pipeline, one step per line (DESIGN.md):

  seize ─► /proc facts (unsupported fds, VMAs refused here) ─► infect ─► pages, fds, sigactions,
  misc ─► cure ─► registers, mm, creds ─► images ─► kill (or --leave-running)

Every step lives in its own module of crpy.dump.  Cleanup is a context-manager stack: whatever
fails after the seize (an error, Ctrl-C, a fault point), the parasite is cured and the task
detached exactly as it was.
"""

import contextlib
import os
import time

from crpy.errors import CrpyError, DumpError
from crpy.log import log, setup


class _Clock:
    """Seconds spent per step, for the stats."""

    def __init__(self, stats):
        self.stats, self.t = stats, time.monotonic()

    def __call__(self, name):
        now = time.monotonic()
        self.stats.setdefault("time", {})[name] = round(now - self.t, 6)
        self.t = now


def run_dump(opts):
    """Dump task opts.pid into opts.images_dir; returns a dict of statistics."""
    _prepare_dir(opts.images_dir)
    setup(opts.verbosity, opts.log_file, opts.images_dir)
    log.info("Dumping task %d into %s", opts.pid, opts.images_dir)
    try:
        try:
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
    from crpy.dump.core import core_entry
    from crpy.dump.creds import dump_creds
    from crpy.dump.facts import collect_facts
    from crpy.dump.fds import dump_fds
    from crpy.dump.files import FileTable
    from crpy.dump.finish import kill_task
    from crpy.dump.fs import dump_fs
    from crpy.dump.images import pstree_entry, write_images
    from crpy.dump.infection import infected
    from crpy.dump.mm import mm_entry
    from crpy.dump.pages import dump_pages, scan_pages
    from crpy.dump.preload import start_preload
    from crpy.dump.regs import dump_regs
    from crpy.dump.seize import seized
    from crpy.dump.target import check_target
    from crpy.dump.task_state import dump_misc, dump_sigactions
    from crpy.dump.vmas import plan_vmas

    pid, images_dir = opts.pid, opts.images_dir
    stats = {"pid": pid}
    tick = _Clock(stats)
    check_target(pid)
    with contextlib.ExitStack() as cleanup:
        task = cleanup.enter_context(seized(pid))
        facts = collect_facts(pid, task.stop_signal)
        files = FileTable()
        exe_id = files.add_path(facts.exe, facts.exe_st)
        plans = plan_vmas(facts, files)
        page_plan = scan_pages(pid, plans)
        tick("collect")
        infection = cleanup.enter_context(infected(pid))
        start_preload()                   # imports ride along while the pages move GIL-free
        stats.update(dump_pages(infection.parasite, images_dir, pid, page_plan))
        tick("pages")
        fdinfo = dump_fds(facts, files)
        fs = dump_fs(facts, files)
        sigactions = dump_sigactions(infection.parasite)
        misc = dump_misc(infection.parasite)
        infection.cure()
        regs = dump_regs(pid)
        mm = mm_entry(facts, plans, page_plan, misc, exe_id)
        creds = dump_creds(facts.status, misc)
        core = core_entry(facts, regs, sigactions, misc, creds, task.stop_signal)
        write_images(images_dir, pid, {"pstree": pstree_entry(facts, misc), "core": core, "mm": mm,
                                       "fs": fs, "fdinfo": fdinfo, "files": files.entries})
        tick("images")
        if not opts.leave_running:
            kill_task(task)
        tick("finish")
    stats.update(vmas=len(plans), fds=len(fdinfo), pages=page_plan.nr_pages)
    log.info("Dump of %d finished: %s", pid, stats)
    return stats


def _prepare_dir(images_dir):
    try:
        os.makedirs(images_dir, exist_ok=True)
    except OSError as e:
        raise DumpError(f"cannot use images directory {images_dir}: {e.strerror}",
                        "give a writable directory with -D") from None
