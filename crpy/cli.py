"""The crpy command line: dump, pre-dump, restore, lazy-pages, check, cpuinfo, check-images, show,
and the migration commands page-server, receive and migrate (crpy.migrate.cli).

Options are spelled as criu spells them, so scripts written for criu run unchanged.  An option of
criu's that crpy does not implement yet is refused by name, never silently ignored.  Every crpy
error ends as one line on stderr and a non-zero exit; tracebacks are for bugs only.
"""

import argparse
import sys

# criu options that crpy knows of but does not implement yet: refused with a clear message.
_NOT_YET = {
    "dump": ["--ext-unix-sk", "--manage-cgroups",
             "--lazy-pages", "--auto-dedup", "--external", "--root", "--freeze-cgroup",
             "--timeout",
             "--evasive-devices", "--leave-stopped", "--pidfd-store", "--stream"],
    "restore": ["--ext-unix-sk",
                "--manage-cgroups", "--root", "--inherit-fd", "--external", "--auto-dedup",
                "--restore-sibling", "--leave-stopped", "--stream",
                "--page-server", "--address", "--port"],
}


def _verbosity(argv):
    """criu's -v, -vv, -v4 and --verbosity=N; returns (level or None, argv without them)."""
    level, rest = None, []
    for arg in argv:
        if arg == "-v" or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            level = (level if level and level > 2 else 2) + arg.count("v")
        elif arg.startswith("-v") and arg[2:].isdigit():
            level = int(arg[2:])
        elif arg.startswith("--verbosity="):
            level = int(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return level, rest


def _parser(command=None):
    """The argument parser: with a known command, its subparser alone (building all of them costs
    ms of every run's start-up), else every command's, so `crpy --help` lists them all."""
    from crpy import __version__

    p = argparse.ArgumentParser(prog="crpy", description="checkpoint/restore of Linux process trees")
    p.add_argument("--version", action="version", version=f"crpy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in [command] if command in _COMMANDS else _COMMANDS:
        help_line, add = _COMMANDS[name]
        add(sub.add_parser(name, help=help_line))
    return p


def _dump_args(d):
    d.add_argument("-t", "--tree", type=int, required=True, metavar="PID")
    _images_dir_arg(d)
    d.add_argument("-o", "--log-file", metavar="FILE")
    d.add_argument("-R", "--leave-running", action="store_true")
    d.add_argument("-j", "--shell-job", action="store_true")
    d.add_argument("--skip-integrity", action="store_true",
                   help="write no digests of the images (crpy-digests); restore them with --skip-integrity")
    d.add_argument("-l", "--file-locks", action="store_true", help="dump the file locks the tree holds")
    d.add_argument("--tcp-established", action="store_true", help="dump established TCP connections")
    d.add_argument("--tcp-close", action="store_true",
                   help="accept established TCP connections without saving them: restored closed (restore --tcp-close)")
    d.add_argument("--skip-in-flight", action="store_true",
                   help="drop TCP connections waiting in a listener's backlog, not yet accepted")
    d.add_argument("--link-remap", action="store_true",
                   help="keep open, unlinked files as links in their file system, not in the images")
    d.add_argument("--ghost-limit", type=_size, default=1 << 20, metavar="SIZE",
                   help="largest unlinked file whose contents go into the images (criu's: 1M; K, M, G)")
    _network_lock_arg(d)
    _round_args(d)


def _pre_dump_args(p):
    p.add_argument("-t", "--tree", type=int, required=True, metavar="PID")
    _images_dir_arg(p)
    p.add_argument("-o", "--log-file", metavar="FILE")
    p.add_argument("--skip-integrity", action="store_true", help="write no digests of the images")
    p.add_argument("--pre-dump-mode", choices=("splice", "read"), default="splice",
                   help="how pages are copied after the tree resumed: from page references taken while "
                        "it was frozen (splice), or read from the running tree (read)")
    _round_args(p)


def _round_args(parser):
    """What dump and pre-dump share: the rounds of a pre-copy, and where the pages go."""
    parser.add_argument("--prev-images-dir", metavar="REL",
                        help="the previous pre-dump's images, relative to -D (linked as DIR/parent)")
    parser.add_argument("--track-mem", action="store_true",
                        help="dump only pages written since --prev-images-dir (userfaultfd tracking)")
    parser.add_argument("--compress", action="store_true",
                        help="write the page images compressed (lz4); restore reads them as they are")
    parser.add_argument("--page-server", action="store_true",
                        help="send the page data to `crpy page-server` at --address/--port (all images sent at the end)")
    parser.add_argument("--address", metavar="A", help="the page server's address (default localhost)")
    parser.add_argument("--port", type=int, default=0, metavar="N", help="the page server's port")


def _restore_args(r):
    _images_dir_arg(r)
    r.add_argument("-d", "--restore-detached", action="store_true")
    r.add_argument("--pidfile", metavar="FILE")
    r.add_argument("-o", "--log-file", metavar="FILE")
    r.add_argument("-j", "--shell-job", action="store_true")
    r.add_argument("--skip-integrity", action="store_true",
                   help="restore without checking the images against crpy-digests (images of criu or another tool)")
    r.add_argument("--check-pages-before-fork", action="store_true",
                   help="hash the page data too before the first fork (slower), not in each task as it reads "
                        "its pages (either way no task runs before its pages are checked)")
    r.add_argument("-l", "--file-locks", action="store_true", help="accepted: dumped locks are always taken again")
    r.add_argument("--tcp-established", action="store_true", help="accepted: dumped connections are always restored")
    r.add_argument("--tcp-close", action="store_true", help="restore established TCP connections closed")
    r.add_argument("--link-remap", action="store_true", help="accepted: link-remapped files are always restored")
    r.add_argument("--ghost-limit", type=_size, metavar="SIZE", help="accepted: a limit of the dump only")
    _network_lock_arg(r)
    r.add_argument("--lazy-pages", action="store_true",
                   help="private anonymous memory comes on first touch from `crpy lazy-pages -D DIR`")


def _network_lock_arg(parser):
    parser.add_argument("--network-lock", choices=("nftables", "iptables", "skip"), metavar="METHOD",
                        help="how the tree's connections are locked from the dump until the restore: nftables "
                             "(the default where nft works), iptables or skip")


def _lazy_pages_args(z):
    _images_dir_arg(z)
    z.add_argument("-o", "--log-file", metavar="FILE")
    z.add_argument("--page-server", action="store_true", help="fetch the pages from a `crpy page-server`")
    z.add_argument("--address", metavar="A")
    z.add_argument("--port", type=int, metavar="N")


def _no_args(parser):
    pass


def _cpuinfo_args(c):
    c.add_argument("action", choices=["dump", "check"])
    _images_dir_arg(c)


def _images_dir_arg(parser, default=".", **how):
    """-D/--images-dir DIR, the images' directory (default: here); how: required, help."""
    parser.add_argument("-D", "--images-dir", default=default, metavar="DIR", **how)


def _show_args(s):
    s.add_argument("paths", nargs="+", metavar="FILE|DIR")
    s.add_argument("--pretty", action="store_true", help="indent the JSON")


def _migration_args(name):
    """The arguments of a migration command: they live with it, in crpy.migrate.cli."""
    def add(parser):
        from crpy.migrate.cli import add_arguments

        add_arguments(name, parser)
    return add


# every command, in the order `crpy --help` lists them: (its line there, what adds its arguments)
_COMMANDS = {
    "dump": ("checkpoint a process tree", _dump_args),
    "pre-dump": ("save the tree's memory and let it run on (rounds before a dump)", _pre_dump_args),
    "restore": ("restore a process tree", _restore_args),
    "lazy-pages": ("serve the pages of a `restore --lazy-pages` (post-copy)", _lazy_pages_args),
    "check": ("check that this kernel has what crpy needs", _no_args),
    "page-server": ("receive the images of a dump --page-server into -D", _migration_args("page-server")),
    "receive": ("the destination of crpy migrate: receive a tree and restore it", _migration_args("receive")),
    "migrate": ("move a running tree to `crpy receive` (pre-copy)", _migration_args("migrate")),
    "cpuinfo": ("write this CPU's cpuinfo.img, or check images' against this CPU", _cpuinfo_args),
    "check-images": ("check the images against the digests the dump wrote, without restoring", _images_dir_arg),
    "show": ("print images as JSON (like crit decode)", _show_args),
}


def _size(text):
    """criu's SIZE arguments: bytes, or a number with K, M or G."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    scale = units.get(text[-1:].upper(), 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or a number with K, M or G)")
    return int(number) * scale


def _refuse_not_yet(command, argv):
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in _NOT_YET.get(command, ()):
            from crpy.errors import OptionError

            raise OptionError(f"option {name} of criu is not implemented by crpy yet",
                              "leave it out, or use a crpy version that has it")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity, argv = _verbosity(argv)
    from crpy.errors import CrpyError

    try:
        if argv:
            _refuse_not_yet(argv[0], argv[1:])
        args = _parser(argv[0] if argv else None).parse_args(argv)
        return _run(args, 2 if verbosity is None else verbosity)
    except CrpyError as e:
        print(e.error_line(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crpy: interrupted", file=sys.stderr)
        return 130


def run():
    """The console script's entry: main(), then exit at once.  Interpreter teardown (garbage
    collecting the module graph of a dump or a restore, running finalizers) costs several ms and
    does nothing for a process that is about to end.  What must still happen does: the atexit
    hooks run (weakref.finalize's, such as the restore's removal of its zombies' cores, and
    logging's flush), and buffered output is flushed."""
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1                 # stdout closed or a broken pipe: say so in the status
    os._exit(code if isinstance(code, int) else 1)


def _start_integrity_check(images_dir):
    from crpy.restore import integrity

    return integrity.start(images_dir)


def _run(args, verbosity):
    from crpy import log

    if args.command in ("dump", "restore"):
        from crpy import progress

        progress.enable(sys.stderr)          # drawn only if stderr is a terminal
    if args.command == "dump":
        from crpy.options import DumpOptions
        from crpy.dump.pipeline import run_dump

        opts = DumpOptions(pid=args.tree, images_dir=args.images_dir, skip_integrity=args.skip_integrity,
                           leave_running=args.leave_running,
                           shell_job=args.shell_job, log_file=args.log_file, verbosity=verbosity,
                           file_locks=args.file_locks, link_remap=args.link_remap,
                           ghost_limit=args.ghost_limit,
                           prev_images_dir=args.prev_images_dir, track_mem=args.track_mem,
                           tcp_established=args.tcp_established, skip_in_flight=args.skip_in_flight,
                           tcp_close=args.tcp_close, compress=args.compress, network_lock=args.network_lock,
                           page_server=args.page_server, address=args.address, port=args.port)
        run_dump(opts)
        return 0
    if args.command == "pre-dump":
        from crpy.options import DumpOptions
        from crpy.dump.pipeline import run_dump

        run_dump(DumpOptions(pid=args.tree, images_dir=args.images_dir, skip_integrity=args.skip_integrity,
                             leave_running=True, log_file=args.log_file, verbosity=verbosity, pre_dump=True,
                             prev_images_dir=args.prev_images_dir, track_mem=True,
                             pre_dump_mode=args.pre_dump_mode, compress=args.compress,
                             page_server=args.page_server, address=args.address, port=args.port))
        return 0
    if args.command == "restore":
        # the image check hashes every image on the other core from now on, not only once the
        # restore's modules are imported and its log is set up (tens of ms sooner)
        checked = None if args.skip_integrity else _start_integrity_check(args.images_dir)
        from crpy.options import RestoreOptions
        from crpy.restore.pipeline import run_restore

        opts = RestoreOptions(images_dir=args.images_dir, detach=args.restore_detached,
                              pidfile=args.pidfile, shell_job=args.shell_job, log_file=args.log_file,
                              verbosity=verbosity, skip_integrity=args.skip_integrity,
                              check_pages_before_fork=args.check_pages_before_fork,
                              network_lock=args.network_lock, tcp_close=args.tcp_close,
                              lazy_pages=args.lazy_pages)
        result = run_restore(opts, checked)
        return 0 if args.restore_detached else result
    if args.command in ("page-server", "receive", "migrate"):
        from crpy.migrate.cli import run_command

        return run_command(args, verbosity)
    if args.command == "lazy-pages":
        from crpy.lazy.daemon import run_lazy_pages

        return run_lazy_pages(args.images_dir, args.log_file, verbosity,
                              (args.address, args.port) if args.page_server else None)
    if args.command == "check":
        from crpy.check import run_check

        log.setup(verbosity)
        return run_check()
    if args.command == "cpuinfo":
        from crpy import cpuinfo

        log.setup(verbosity)
        return cpuinfo.run(args.action, args.images_dir)
    if args.command == "check-images":
        return _check_images(args.images_dir)
    if args.command == "show":
        from crpy.images.show import show

        return show(args.paths, pretty=args.pretty)
    _parser().print_help(sys.stderr)
    return 1


def _check_images(images_dir):
    """`crpy check-images -D DIR`: exit 0 if every image is intact, else one line per damaged one."""
    import os

    from crpy.errors import ImageError
    from crpy.images import digest

    if not os.path.isdir(images_dir):
        raise ImageError(images_dir, "not a directory", hint="give the -D directory of a dump")
    damaged = digest.damaged_images(images_dir)
    for error in damaged:
        print(f"crpy: damaged: {error.one_line()}", file=sys.stderr)
    if damaged:
        return 1
    print(f"{images_dir}: {len(digest.read_digests(images_dir)[2])} images intact")
    return 0
