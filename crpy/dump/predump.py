"""The pre-dump pipeline (criu pre-dump): the tree's memory only, and the tree goes on running.

  seize_tree ─► tracking: take it back from the holder ─► per task: /proc facts ─► VMAs ─► pages
  scan ─► written since the last round (re-armed) ─► infect ─► register new VMAs ─► pages ─► cure
  ─► crpy-memtrack.json, digests ─► detach ─► the holder keeps the tracking

The pages are copied while the tree is frozen (this first version does not resume it before the
copy).  Each round after the first writes only pages written since the previous one; the others
are PE_PARENT entries pointing into --prev-images-dir (the `parent` link).  Whatever fails, the
tree is cured and detached as it was and the tracking is dropped (the fds are closed).
"""

import itertools

from crpy.log import log


def pre_dump(opts):
    from crpy import faults
    from crpy.dump.files import FileTable
    from crpy.dump.images import begin_image_digests, write_image_digests
    from crpy.dump.memtrack import Tracking, link_parent, prev_dir
    from crpy.dump.target import check_target
    from crpy.dump.tree import seize_tree

    pid, images_dir = opts.pid, opts.images_dir
    stats = {"pid": pid, "pages": 0, "parent_pages": 0}
    check_target(pid)
    if opts.prev_images_dir:
        link_parent(images_dir, opts.prev_images_dir)
    track = Tracking(images_dir, pid, prev_dir(images_dir, opts.prev_images_dir), keep=True)
    begin_image_digests(images_dir, skip=opts.skip_integrity)
    try:
        track.begin()
        with seize_tree(pid) as tasks:
            files, pages_ids = FileTable(images_dir, itertools.count(1)), itertools.count(1)
            for task in tasks:
                if not task.zombie:
                    _pre_dump_task(track, task, images_dir, files, next(pages_ids), stats)
            track.finish()
            if opts.compress:
                from crpy.dump.compress import compress_page_images

                compress_page_images(images_dir, stats)
            write_image_digests(images_dir)
            faults.point("after-images")
        track.hand_over()                  # the tree runs again; the holder keeps the fds
    except BaseException:
        track.abandon()
        raise
    stats["tasks"] = len(tasks)
    log.info("Pre-dump of %d finished: %s", pid, stats)
    return stats


def _pre_dump_task(track, task, images_dir, files, pages_id, stats):
    """facts -> vmas -> pages scan -> written since -> infect -> arm -> pages -> cure."""
    from crpy.dump.facts import collect_facts
    from crpy.dump.infection import infected
    from crpy.dump.pages import dump_private_pages, scan_pages
    from crpy.dump.vmas import plan_vmas

    pid = task.pid
    facts = collect_facts(pid, task.seized.stop_signal)
    track.check_task(pid, facts)
    plans = plan_vmas(facts, files)
    page_plan = scan_pages(pid, plans)
    track.select(pid, facts, page_plan)
    with infected(pid) as infection:
        track.arm(pid, infection.parasite, plans, facts.vmas)
        dump_private_pages(infection.parasite, images_dir, pid, page_plan, pages_id)
        infection.cure()
    stats["pages"] += page_plan.nr_pages
    stats["parent_pages"] += sum(e - s for s, e, _, _ in page_plan.parent_runs) // 4096
