"""The command lines of `crpy page-server`, `crpy receive` and `crpy migrate`."""

import sys

from crpy.cli import _images_dir_arg


def run_command(args, verbosity):
    from crpy import log

    if args.command == "page-server":
        from crpy.pageserver.server import run_page_server

        log.setup(verbosity, args.log_file, args.images_dir)
        if args.lazy_pages:
            from crpy.pageserver.serve import run_serving

            return run_serving(args.images_dir, args.address, args.port, args.daemon, args.status_fd)
        return run_page_server(args.images_dir, args.address, args.port, args.daemon, args.status_fd)
    if args.command == "receive":
        from crpy.migrate.receive import run_receive

        log.setup(verbosity, args.log_file, args.images_dir)
        return run_receive(args.images_dir, args.address, args.listen, args.status_fd)
    return _migrate(args, verbosity)


def _migrate(args, verbosity):
    import tempfile

    from crpy.migrate.source import migrate

    work = args.images_dir or tempfile.mkdtemp(prefix=f"crpy-migrate-{args.tree}-")

    def restored(result):              # --lazy: said before the pages are served
        print(f"restored as pid {result.pid} there; frozen {result.frozen_seconds:.3f} s; serving its pages",
              flush=True)

    result = migrate(args.tree, args.to, work, max_rounds=args.max_rounds, min_rounds=args.min_rounds,
                     on_round=lambda r: print(r.line(), flush=True), verbosity=verbosity,
                     log_file=args.log_file, lazy=args.lazy, on_restored=restored, restore_mode=args.restore_mode,
                     dump_opts={"file_locks": args.file_locks, "link_remap": args.link_remap,
                                "shell_job": args.shell_job, "ghost_limit": args.ghost_limit})
    print(f"migrated {args.tree} to {args.to}: restored as pid {result.pid}; frozen "
          f"{result.frozen_seconds:.3f} s (restore there {result.restore_seconds:.3f} s); "
          f"local images in {work}", flush=True)
    return 0


def _size(text):
    from crpy.cli import _size as size

    return size(text)


def add_arguments(command, parser):
    """The arguments of page-server, receive or migrate (crpy.cli makes the parser)."""
    {"page-server": _page_server_args, "receive": _receive_args, "migrate": _migrate_args}[command](parser)


def _page_server_args(p):
    _images_dir_arg(p)
    p.add_argument("--port", type=int, required=True, metavar="N", help="TCP port (0: any, printed)")
    p.add_argument("--address", metavar="A", help="address to listen on (default: all)")
    p.add_argument("-d", "--daemon", action="store_true", help="go to the background once listening")
    p.add_argument("--status-fd", type=int, metavar="FD", help="write one byte to FD once listening")
    p.add_argument("--lazy-pages", action="store_true",
                   help="serve the pages of the dump in -D to `crpy lazy-pages --page-server` instead")
    p.add_argument("-o", "--log-file", metavar="FILE")


def _receive_args(r):
    r.add_argument("--listen", type=int, required=True, metavar="PORT", help="TCP port (0: any, printed)")
    r.add_argument("--address", metavar="A", help="address to listen on (default: all)")
    _images_dir_arg(r, None, required=True, help="where the images go")
    r.add_argument("--status-fd", type=int, metavar="FD", help="write one byte to FD once listening")
    r.add_argument("-o", "--log-file", metavar="FILE")


def _migrate_args(m):
    m.add_argument("-t", "--tree", type=int, required=True, metavar="PID")
    m.add_argument("--to", required=True, metavar="HOST:PORT", help="where `crpy receive` listens")
    m.add_argument("--max-rounds", type=int, default=5, metavar="N", help="pre-copy rounds at most (0: none)")
    m.add_argument("--min-rounds", type=int, default=1, metavar="N",
                   help="pre-copy rounds at least, even when the dirty set stops shrinking")
    _images_dir_arg(m, None, help="local work directory (default: a new one in /tmp)")
    m.add_argument("--lazy", action="store_true", help="post-copy: the destination runs at once, its pages pulled from here after")
    m.add_argument("--restore-mode", choices=("lazy", "eager"), default="lazy",
                   help="without --lazy, how the destination restores the pages it has: lazy (default: the tree "
                        "runs before its memory is filled, from a local lazy-pages) or eager (filled first)")
    m.add_argument("-l", "--file-locks", action="store_true", help="as crpy dump --file-locks (every round)")
    m.add_argument("--link-remap", action="store_true", help="as crpy dump --link-remap")
    m.add_argument("-j", "--shell-job", action="store_true", help="as crpy dump --shell-job")
    m.add_argument("--ghost-limit", type=_size, default=1 << 20, metavar="SIZE", help="as crpy dump --ghost-limit")
    m.add_argument("-o", "--log-file", metavar="FILE")
