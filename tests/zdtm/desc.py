"""Per-test options of the zdtm harness (what CRIU's zdtm keeps in .desc files), as one table.

    dump, restore : extra arguments for `crpy dump` / `crpy restore` (e.g. --file-locks)
    dump_fails    : the dump must fail with one line on stderr and leave the task running, untouched
                    (it then still passes its own check); no restore follows
    lazy          : restore with --lazy-pages (tests/zdtm/lazy.py); lazy_push_delay_ms slows the
                    daemon's background push so the test's own reads fault the pages in
    needs         : CPU features the test cannot run without, as /proc/cpuinfo flags (e.g. pku and
                    ospke: protection keys, in the CPU and enabled by the kernel).  On a CPU that
                    lacks one the test does not run at all: it is reported as SKIP with the missing
                    flags named (a pytest skip with that reason), never counted as passed or failed.
    needs_cr      : the test checks what a dump and restore did to it (tcp_close: its connections
                    come back closed): run without C/R (--no-cr) it is a SKIP saying so
    busy          : at its waiting point a thread of the test never sleeps (it spins, or waits in
                    D as vfork's parent does): the harness does not wait for the whole tree to be
                    asleep after the start, it gives it a fixed harness.SETTLE

Trees need no entry: a test that forks writes the pids of its whole tree, one per line, to
OUTFILE.pids before it is ready; the harness then checks that every one is gone after the dump and
back after the restore.
"""

import os

DESC = {
    "locks": {"dump": ["--file-locks"]},
    "tree5": {"dump": ["--file-locks"]},
    "lease": {"dump": ["--file-locks"]},
    "unsupported_fd": {"dump_fails": True},
    "clone_files_siblings": {"dump_fails": True},
    "epoll_outside": {"dump_fails": True},
    "inotify_queued": {"dump_fails": True},
    "fanotify_mount": {"dump_fails": True},
    "pidfd_outside": {"dump_fails": True},
    "pidfd_shared": {"dump_fails": True},
    "refused_io_uring": {"dump_fails": True},
    "refused_userfaultfd": {"dump_fails": True},
    "refused_perf": {"dump_fails": True},
    "refused_bpf": {"dump_fails": True},
    "refused_aio": {"dump_fails": True},
    "pkeys": {"needs": ["pku", "ospke"]},
    "amx": {"needs": ["amx_tile"]},
    "amx_inuse": {"needs": ["amx_tile"], "dump_fails": True},
    "unlinked": {"dump": ["--ghost-limit", "16M"]},          # criu's default limit is 1 MiB
    "unlinked_sparse": {"dump": ["--ghost-limit", "2G"]},
    "ghost_limit": {"dump_fails": True},
    "nsfs_foreign": {"dump_fails": True},
    "fown_outside": {"dump_fails": True},
    "vfork": {"dump_fails": True, "busy": True},
    "busyloop": {"busy": True},
    "vector": {"busy": True},
    "threads_fpu": {"busy": True},
    "ns_uts": {"dump_fails": True},
    "ns_time": {"dump_fails": True},
    "zombie_leader": {"dump_fails": True},
    "stopped_threads": {"dump_fails": True},
    "unix_peer_outside": {"dump_fails": True},
    "unix_backlog": {"dump_fails": True},
    "unix_scm_rights": {"dump_fails": True},
    "unix_peercred": {"dump_fails": True},
    "udp_queued": {"dump_fails": True},
    "udp_corked": {"dump_fails": True},
    "netlink_queued": {"dump_fails": True},
    "packet_ring": {"dump_fails": True},
    "tcp_established": {"dump": ["--tcp-established"]},
    "tcp_no_established": {"dump_fails": True},
    "tcp_half_closed": {"dump": ["--tcp-established"]},
    "tcp_closing": {"dump": ["--tcp-established"]},
    "tcp_backlog": {"dump_fails": True},
    "tcp_syn_sent": {"dump_fails": True, "dump": ["--tcp-established"]},
    "tcp_close": {"dump": ["--tcp-close"], "restore": ["--tcp-close"], "needs_cr": True},
    "lazy_mem": {"lazy": True, "lazy_push_delay_ms": 10},
}
# Flags listed here (space-separated) count as missing: the harness's own tests use it to see a
# test skipped on any CPU.
HIDE_FLAGS_ENV = "ZDTM_HIDE_CPU_FLAGS"


def options(name):
    """The option dict of a test (empty when it has none)."""
    return DESC.get(name, {})


def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (of the first CPU), less those hidden by HIDE_FLAGS_ENV."""
    hidden = set(os.environ.get(HIDE_FLAGS_ENV, "").split())
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split()) - hidden
    return set()


def skip_reason(name):
    """Why test `name` cannot run on this CPU (naming the missing features), or None."""
    needs = options(name).get("needs", [])
    missing = [flag for flag in needs if flag not in cpu_flags()] if needs else []
    if not missing:
        return None
    return f"needs CPU feature {', '.join(missing)} (/proc/cpuinfo flags), which this CPU lacks"
