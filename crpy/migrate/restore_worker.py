"""A restore that waits for its images: `crpy receive` starts it while the pre-copy rounds
arrive, so the interpreter's start and the import of crpy's restore modules (0.3-1 s on a busy
machine) are paid before the source tree is frozen, not in its frozen time.

    python3 -m crpy.migrate.restore_worker      prints "ready", then reads one line: an images
                                                directory, restored detached (restore.log and
                                                restored.pid in it); prints "pid N" or "error LINE"

End of input instead of a line: it exits and does nothing.
"""

import sys


def _preload():
    """Import what a restore imports as it goes (its steps import lazily)."""
    import importlib
    import pkgutil

    import crpy.resources
    import crpy.restore

    for package in (crpy.restore, crpy.resources):
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")


def main():
    import os

    from crpy.errors import CrpyError

    _preload()
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.endswith("\n"):
        return 0
    images_dir = line[:-1]
    from crpy.options import RestoreOptions
    from crpy.restore.pipeline import run_restore

    try:
        pid = run_restore(RestoreOptions(images_dir=images_dir, detach=True, verbosity=4, log_file="restore.log",
                                         pidfile=os.path.join(images_dir, "restored.pid")))
    except CrpyError as e:
        print(f"error {e.one_line()}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: still one line for the receiver to pass on
        print(f"error internal error in the restore: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"pid {pid}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
