"""Options of a dump and of a restore, named as criu names them.

One frozen dataclass per direction; the CLI and the Python API both build these, and the pipelines
read nothing else.  `fault` is a test-only hook: the name of a point where the dump stops on purpose
(see crpy.faults), so tests can prove a failed dump leaves the task as it was.
"""

from crpy.record import dataclass


@dataclass(frozen=True)
class DumpOptions:
    pid: int
    images_dir: str
    leave_running: bool = False
    shell_job: bool = False
    log_file: str | None = None
    verbosity: int = 2
    skip_integrity: bool = False      # write no crpy-digests (their restore then needs --skip-integrity too)
    file_locks: bool = False          # criu --file-locks: dump held locks (else a held lock is an error)
    link_remap: bool = False          # criu --link-remap: unlinked files linked back, not copied
    ghost_limit: int = 1 << 20        # criu --ghost-limit: largest unlinked file copied into the images
    pre_dump: bool = False            # criu pre-dump: pages only, the tree resumes (crpy.dump.predump)
    prev_images_dir: str | None = None      # criu --prev-images-dir, relative to images_dir
    track_mem: bool = False           # criu --track-mem: pages unchanged since prev_images_dir are not dumped
    pre_dump_mode: str = "splice"     # criu --pre-dump-mode: splice (page references) or read (process_vm_readv)
    compress: bool = False            # criu --compress: page images compressed (crpy.images.pagecodec)
    network_lock: str | None = None   # criu --network-lock: nftables, iptables, skip (None: nftables if nft works)
    page_server: bool = False         # criu --page-server: page data to `crpy page-server` (crpy.pageserver)
    address: str | None = None        # criu --address of the page server
    port: int = 0                     # criu --port of the page server
    tcp_established: bool = False     # criu --tcp-established: dump established TCP connections (repair mode)
    skip_in_flight: bool = False      # criu --skip-in-flight: drop connections not yet accepted
    tcp_close: bool = False           # criu --tcp-close: established TCP connections not saved (restored closed)
    lazy_pages: bool = False          # criu dump --lazy-pages: private pages left in pipes for the caller to
                                      # serve (crpy migrate --lazy; crpy.dump.held_pages), no crpy-digests


@dataclass(frozen=True)
class RestoreOptions:
    images_dir: str
    detach: bool = False
    pidfile: str | None = None
    shell_job: bool = False
    log_file: str | None = None
    verbosity: int = 2
    skip_integrity: bool = False      # take the images as they are: no crpy-digests check (criu's images)
    check_pages_before_fork: bool = False   # hash the page data before the first fork too (not as it is read)
    network_lock: str | None = None   # criu --network-lock: how the dump locked it (lifted once the tree runs)
    tcp_close: bool = False           # criu --tcp-close: established TCP connections come back closed
    lazy_pages: bool = False          # criu --lazy-pages: private anonymous memory from `crpy lazy-pages`
