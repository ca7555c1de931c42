"""A restore that waits for its images: `crpy receive` starts it while the pre-copy rounds
arrive, so the interpreter's start and the import of crpy's restore modules (0.3-1 s on a busy
machine) are paid before the source tree is frozen, not in its frozen time.

    python3 -m crpy.migrate.restore_worker      prints "ready", then reads one line: an images
                                                directory, restored detached (restore.log and
                                                restored.pid in it); prints "pid N" or "error LINE"
                                                "DIR\tlazy\tADDR\tPORT\tNAME=SIZE...": restored
                                                with --lazy-pages from that page server
                                                (crpy.migrate.lazy.prepare_lazy)
                                                "DIR\tlocal": restored with --lazy-pages from
                                                the local images; after "pid N" it waits for
                                                that daemon and prints "pages in" or "error LINE"

End of input instead of a line: it exits and does nothing.
"""

import os
import sys


def _preload():
    """Import what a restore imports as it goes (its steps import lazily)."""
    import importlib
    import pkgutil

    import crpy.resources
    import crpy.restore

    import crpy.lazy

    for package in (crpy.restore, crpy.resources, crpy.lazy):
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")


def main():
    from crpy.errors import CrpyError

    _preload()
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.endswith("\n"):
        return 0
    images_dir, *lazy = line[:-1].split("\t")
    from crpy.options import RestoreOptions
    from crpy.restore.pipeline import run_restore

    daemon = None
    try:
        if lazy == ["local"]:
            from crpy.migrate.lazy import start_daemon

            daemon = start_daemon(images_dir)
        elif lazy:
            from crpy.migrate.lazy import parse_request, prepare_lazy

            daemon = prepare_lazy(images_dir, *parse_request(lazy[1:]))
        pid = run_restore(RestoreOptions(images_dir=images_dir, detach=True, verbosity=4, log_file="restore.log",
                                         pidfile=os.path.join(images_dir, "restored.pid"),
                                         lazy_pages=bool(lazy),
                                         # lazy: the sent images were checked at FIN by the receiver
                                         # a moment ago (every file against the sender's digest of
                                         # its stream); remote, the pages images are placeholders
                                         # filled from the source, which crpy-digests cannot list
                                         skip_integrity=bool(lazy)))
    except CrpyError as e:
        _stop(daemon)
        print(f"error {e.one_line()}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: still one line for the receiver to pass on
        _stop(daemon)
        print(f"error internal error in the restore: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"pid {pid}", flush=True)
    if lazy == ["local"]:
        from crpy.migrate.lazy import daemon_result

        failed = daemon_result(daemon, images_dir)
        print("pages in" if failed is None else f"error {failed}", flush=True)
        return 0 if failed is None else 1
    return 0


def _stop(daemon):
    """The restore failed: its lazy-pages daemon has nothing to serve."""
    if daemon is not None:
        try:
            os.kill(daemon, 9)
        except ProcessLookupError:
            pass
        os.waitpid(daemon, 0)


if __name__ == "__main__":
    sys.exit(main())
