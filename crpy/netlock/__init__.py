"""The network lock (criu's --network-lock): while a tree is dumped, and until its restore has
resumed it, no packet reaches or leaves its TCP connections, so peers see no RST (the sockets are
gone between the kill and the restore) and nothing is lost (they retransmit once it is lifted).

As criu's nftables mode: one table per dumped tree, named after its root pid (criu: CRIU-<pid>,
crpy: crpy-<pid>), dropping the packets of each locked connection by its 4-tuple (and those to a
locked listening address:port), letting through what carries crpy's mark (SOCCR_MARK, 0xC114: the
repair traffic).  --network-lock iptables does the same with a chain crpy-<pid> in iptables and
ip6tables; skip locks nothing.  The default is nftables where `nft` works, else iptables.

The dump takes the lock (dump_lock().add(connections), called by the socket kinds as they meet
connections; the table is made at the first, so a dump without any costs nothing), and at its end
keeps it for the restore, or lifts it (--leave-running, or the dump failed).  A janitor
(crpy.netlock.janitor) lifts it if crpy dies first.  `crpy restore` lifts it once the tree runs
again (release_after_restore); a failed restore keeps it, for the next attempt.
"""

from crpy.record import dataclass

METHODS = ("nftables", "iptables", "skip")
SOCCR_MARK = 0xC114


@dataclass(frozen=True)
class Connection:
    """A TCP endpoint of the tree: a connection (local and remote address and port), or a
    listening socket (remote None: every packet to local_addr:local_port is dropped)."""
    family: int                       # socket.AF_INET or AF_INET6
    local_addr: str
    local_port: int
    remote_addr: str | None = None
    remote_port: int | None = None


def table_name(root_pid):
    return f"crpy-{root_pid}"


def default_method():
    """nftables if the nft binary works here, else iptables (criu's default is nftables)."""
    from crpy.netlock import nft

    return "nftables" if nft.works() else "iptables"


def backend(method):
    from crpy.errors import OptionError

    if method == "nftables":
        from crpy.netlock import nft
        return nft
    if method == "iptables":
        from crpy.netlock import iptables
        return iptables
    raise OptionError(f"--network-lock {method}: not one of {', '.join(METHODS)}")


class NetworkLock:
    """The lock of one tree: made at the first add(), lifted by release(), left for the restore
    by keep().  A janitor lifts it if crpy dies in between."""

    def __init__(self, root_pid, method):
        self.root_pid, self.method = root_pid, method
        self.name = table_name(root_pid)
        self.made, self.locked = False, []

    def add(self, connections):
        """Drop every packet of these connections from now on."""
        connections = list(connections)
        if self.method == "skip" or not connections:
            return
        from crpy.log import log
        from crpy.netlock import janitor

        impl = backend(self.method)
        if not self.made:
            janitor.ready()                      # forked before the table exists: a kill cannot leave it
            janitor.made(self.method, self.name)
            impl.create(self.name, SOCCR_MARK)
            self.made = True
        impl.add(self.name, connections)
        self.locked += connections
        log.info("network lock %s (%s): %d connection(s) locked", self.name, self.method, len(connections))

    def release(self):
        """Lift the lock (and stop the janitor)."""
        from crpy.netlock import janitor

        if self.made:
            backend(self.method).remove(self.name)
            janitor.forget(self.name)
            self.made = False
        janitor.stop()

    def keep(self):
        """The dump succeeded: the lock stays until the restore lifts it."""
        from crpy.netlock import janitor

        if self.made:
            janitor.forget(self.name)
        janitor.stop()


_current = [None]


def begin_dump(root_pid, method):
    """The lock of the dump that starts (nothing is made yet)."""
    _current[0] = NetworkLock(root_pid, method or default_method())
    return _current[0]


def dump_lock():
    """The lock of the dump in progress, for the socket kinds: dump_lock().add(connections)."""
    if _current[0] is None:
        raise RuntimeError("no dump in progress has a network lock")
    return _current[0]


def end_dump(ok, leave_running):
    """At the end of a dump: kept for the restore after a dump that killed the tree, else lifted."""
    lock, _current[0] = _current[0], None
    if lock is None:
        return
    if ok and not leave_running:
        lock.keep()
    else:
        lock.release()


def lock(root_pid, connections, method=None):
    """Lock `connections` under the name of root_pid, outside a dump: a NetworkLock (release() it)."""
    nl = NetworkLock(root_pid, method or default_method())
    nl.add(connections)
    return nl


def release_after_restore(root_pid, method=None):
    """`crpy restore`, once the tree runs again: lift the lock its dump left (none: nothing)."""
    method = method or default_method()
    if method == "skip":
        return False
    impl = backend(method)
    if not impl.exists(table_name(root_pid)):
        return False
    impl.remove(table_name(root_pid))
    return True
