"""The pre-dump pipeline (criu pre-dump): the tree's memory only, and the tree goes on running.

  tracking: take it back from the holder ─► seize_tree ─► per task: /proc facts (memory only:
  no fd is looked at, as criu's pre-dump; the final dump checks them) ─► VMAs ─► pages scan ─►
  written since the last round (re-armed) ─► infect ─► register new VMAs ─► page references
  into pipes (splice mode) ─► cure ─► detach: the tree runs again ─► pages-N.img and pagemaps
  (crpy.dump.predump_pages) ─► crpy-memtrack.json, digests ─► the holder keeps the tracking

The tree is frozen only to list the pages and re-arm their tracking (stats: frozen_s); they are
copied after it resumed.  Each round after the first writes only pages written since the
previous one; the others are PE_PARENT entries pointing into --prev-images-dir (the `parent`
link).  Whatever fails, the tree is cured and detached as it was and the tracking is dropped
(the fds are closed).
"""

import itertools
import time

from crpy.log import log


def pre_dump(opts):
    from crpy import faults
    from crpy.dump.files import FileTable
    from crpy.dump.images import begin_image_digests, write_image_digests
    from crpy.dump.memtrack import Tracking, link_parent, prev_dir
    from crpy.dump.target import check_target
    from crpy.dump.predump_pages import PipeBudget, write_pages
    from crpy.dump.tree import seize_tree

    pid, images_dir = opts.pid, opts.images_dir
    stats = {"pid": pid, "pages": 0, "parent_pages": 0}
    check_target(pid)
    if opts.prev_images_dir:
        link_parent(images_dir, opts.prev_images_dir)
    track = Tracking(images_dir, pid, prev_dir(images_dir, opts.prev_images_dir), keep=True)
    begin_image_digests(images_dir, skip=opts.skip_integrity)
    held, budget = [], PipeBudget(opts.pre_dump_mode)
    try:
        track.begin()
        frozen = time.monotonic()
        with seize_tree(pid) as tasks:
            files, pages_ids = FileTable(images_dir, itertools.count(1)), itertools.count(1)
            for task in tasks:
                if not task.zombie:
                    _pre_dump_task(track, task, files, next(pages_ids), stats, held, budget)
        stats["frozen_s"] = round(time.monotonic() - frozen, 6)     # the tree runs again from here
        faults.point("pre-dump-copy")
        while held:
            write_pages(*held.pop(0), images_dir)
        track.finish()
        if opts.compress:
            from crpy.dump.compress import compress_page_images

            compress_page_images(images_dir, stats)
        write_image_digests(images_dir)
        faults.point("after-images")
        track.hand_over()                  # the holder keeps the fds
    except BaseException:
        for pages, _ in held:
            pages.close()
        track.abandon()
        raise
    stats["tasks"] = len(tasks)
    log.info("Pre-dump of %d finished: %s", pid, stats)
    return stats


def _pre_dump_task(track, task, files, pages_id, stats, held, budget):
    """facts -> vmas -> pages scan -> written since -> infect -> arm -> page references -> cure.
    Appends (HeldPages, pages_id) to held: its pages are copied after the resume."""
    from crpy.dump.facts import collect_facts
    from crpy.dump.infection import infected
    from crpy.dump.pages import scan_pages
    from crpy.dump.predump_pages import take_pages
    from crpy.dump.vmas import plan_vmas

    pid = task.pid
    facts = collect_facts(pid, task.seized.stop_signal, memory_only=True)
    track.check_task(pid, facts)
    plans = plan_vmas(facts, files)
    page_plan = scan_pages(pid, plans)
    track.select(pid, facts, page_plan)
    with infected(pid) as infection:
        track.arm(pid, infection.parasite, plans, facts.vmas)
        held.append((take_pages(infection.parasite, pid, page_plan, budget), pages_id))
        for key, n in zip(("pipe_bytes", "read_bytes", "frozen_read_bytes"), held[-1][0].sizes()):
            stats[key] = stats.get(key, 0) + n
        infection.cure()
    stats["pages"] += page_plan.nr_pages
    stats["parent_pages"] += sum(e - s for s, e, _, _ in page_plan.parent_runs) // 4096
