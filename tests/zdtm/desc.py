"""Per-test options of the zdtm harness (what CRIU's zdtm keeps in .desc files), as one table.

    dump, restore : extra arguments for `crpy dump` / `crpy restore` (e.g. --file-locks)
    dump_fails    : the dump must fail with one line on stderr and leave the task running, untouched
                    (it then still passes its own check); no restore follows

Trees need no entry: a test that forks writes the pids of its whole tree, one per line, to
OUTFILE.pids before it is ready; the harness then checks that every one is gone after the dump and
back after the restore.
"""

DESC = {
    "locks": {"dump": ["--file-locks"]},
    "unsupported_fd": {"dump_fails": True},
    "clone_files_siblings": {"dump_fails": True},
    "vfork": {"dump_fails": True},
    "ns_uts": {"dump_fails": True},
    "ns_time": {"dump_fails": True},
    "zombie_leader": {"dump_fails": True},
    "stopped_threads": {"dump_fails": True},
}


def options(name):
    """The option dict of a test (empty when it has none)."""
    return DESC.get(name, {})
