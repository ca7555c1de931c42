"""The embedding API for migration tools and harnesses.

    stats = crpy.dump(pid, "imgs", leave_running=True)
    stats = crpy.api.pre_dump(pid, "r2", prev_images_dir="../r1")   # pre-copy rounds
    pid = crpy.restore("imgs", detach=True)

Both raise crpy.errors.CrpyError subclasses on failure; keyword names are those of
crpy.options (criu's option names with underscores).
"""

from crpy.options import DumpOptions, RestoreOptions


def dump(pid, images_dir, **opts):
    """Dump the tree under `pid` into `images_dir`; returns a dict of statistics."""
    from crpy.dump.pipeline import run_dump

    return run_dump(DumpOptions(pid=pid, images_dir=images_dir, **opts))


def pre_dump(pid, images_dir, prev_images_dir=None, **opts):
    """One pre-dump round: the tree's memory into `images_dir`, and the tree runs on.  With
    prev_images_dir (relative to images_dir) only pages written since that round are saved;
    end the chain with dump(..., prev_images_dir=REL, track_mem=True)."""
    from crpy.dump.pipeline import run_dump

    return run_dump(DumpOptions(pid=pid, images_dir=images_dir, pre_dump=True, leave_running=True,
                                track_mem=True, prev_images_dir=prev_images_dir, **opts))


def restore(images_dir, **opts):
    """Restore the tree in `images_dir`.  With detach=True returns the root pid at once;
    otherwise waits for the root task and returns its exit status, as criu does."""
    from crpy.restore.pipeline import run_restore

    return run_restore(RestoreOptions(images_dir=images_dir, **opts))
