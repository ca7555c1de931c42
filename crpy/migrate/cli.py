"""The command lines of `crpy page-server`, `crpy receive` and `crpy migrate`."""

import sys


def run_command(args, verbosity):
    from crpy import log

    if args.command == "page-server":
        from crpy.pageserver.server import run_page_server

        log.setup(verbosity, args.log_file, args.images_dir)
        return run_page_server(args.images_dir, args.address, args.port, args.daemon, args.status_fd)
    print(f"crpy: {args.command} is not there yet", file=sys.stderr)
    return 1
