"""The network lock (criu's --network-lock): while a tree is dumped, and until its restore has
resumed it, no packet reaches or leaves its TCP connections, so peers see no RST (the sockets are
gone between the kill and the restore) and nothing is lost (they retransmit once it is lifted).

As criu's nftables mode: one table per dumped tree, named after its root pid (criu: CRIU-<pid>,
crpy: crpy-<pid>), dropping the packets of each locked connection by its 4-tuple (and those to a
locked listening address:port), letting through what carries crpy's mark (SOCCR_MARK, 0xC114: the
repair traffic).  --network-lock iptables does the same with a chain crpy-<pid> in iptables and
ip6tables; skip locks nothing.  The default is nftables where `nft` works, else iptables.

The dump takes the lock (dump_lock().add(connections), called by the socket kinds as they meet
connections; the table is made at the first, so a dump without any costs nothing; UDP's bound
ports only when the dump kills the tree, add_if_killed: a peer then gets silence rather than ICMP
port unreachable, ECONNREFUSED on its connected socket, until the restore), and at its end
keeps it for the restore, or lifts it (--leave-running, or the dump failed).  A janitor
(crpy.netlock.janitor) lifts it if crpy dies first.  `crpy restore` lifts it once the tree runs
again (release_after_restore); a failed restore keeps it, for the next attempt.
"""

from crpy.record import dataclass

METHODS = ("nftables", "iptables", "skip")
SOCCR_MARK = 0xC114


@dataclass(frozen=True)
class Connection:
    """An endpoint of the tree: a connection (local and remote address and port), or a listening
    or bound socket (remote None: every packet to local_addr:local_port is dropped)."""
    family: int                       # socket.AF_INET or AF_INET6
    local_addr: str | None           # None (after normalized()): any address
    local_port: int
    remote_addr: str | None = None
    remote_port: int | None = None
    proto: str = "tcp"                # "tcp" or "udp"


def _unmapped(family, addr):
    """(family, address) with a v4-mapped v6 address as the v4 one its packets carry."""
    import socket

    if family == socket.AF_INET6 and addr and addr.lower().startswith("::ffff:") and "." in addr:
        return socket.AF_INET, addr[7:]
    return family, addr


def normalized(c):
    """The Connections whose packets are those of c, as the firewall sees them: a v4-mapped v6
    endpoint is v4; a wildcard local address becomes None (any address), for each family it
    receives (a v6 socket on "::" may be dual-stack: v4 as well)."""
    import socket

    family, local = _unmapped(c.family, c.local_addr)
    remote_family, remote = _unmapped(c.family, c.remote_addr)
    if remote is not None:
        return [Connection(remote_family, local, c.local_port, remote, c.remote_port, c.proto)]
    if local in ("0.0.0.0", "::"):
        families = (socket.AF_INET, socket.AF_INET6) if local == "::" else (socket.AF_INET,)
        return [Connection(f, None, c.local_port, proto=c.proto) for f in families]
    return [Connection(family, local, c.local_port, proto=c.proto)]


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

    def __init__(self, root_pid, method, tree_killed=True):
        self._method, self.tree_killed = method, tree_killed
        self.name = table_name(root_pid)
        self.made, self.locked = False, []

    @property
    def method(self):
        """--network-lock, the default found when first needed (it runs nft: not for every dump)."""
        if self._method is None:
            self._method = default_method()
        return self._method

    def add_if_killed(self, connections):
        """add() when the dump kills the tree (not with --leave-running: the sockets stay, and
        what arrives meanwhile is queued for them)."""
        if self.tree_killed:
            self.add(connections)

    def add(self, connections):
        """Drop every packet of these connections from now on."""
        connections = list(connections)
        if not connections or self.method == "skip":
            return
        from crpy.log import log
        from crpy.netlock import janitor

        impl = backend(self.method)
        entries = [n for c in connections for n in normalized(c)]
        if not self.made:
            janitor.ready()                      # forked before the table exists: a kill cannot leave it
            janitor.made(self.method, self.name)
            impl.create(self.name, SOCCR_MARK, entries)     # made with its first entries at once
            self.made = True
        else:
            impl.add(self.name, entries)
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


def begin_dump(root_pid, method, leave_running=False):
    """The lock of the dump that starts (nothing is made yet)."""
    _current[0] = NetworkLock(root_pid, method, tree_killed=not leave_running)
    return _current[0]


def dump_lock():
    """The lock of the dump in progress, for the socket kinds: dump_lock().add(connections)
    (outside a dump: one that locks nothing)."""
    return _current[0] if _current[0] is not None else NetworkLock(0, "skip")


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
    import shutil

    if method == "skip":
        return False
    if method in (None, "nftables") and shutil.which("nft"):
        from crpy.netlock import nft

        if nft.remove(table_name(root_pid)):     # the usual case in one nft call (each costs 20+ ms)
            return True
        if method == "nftables" or nft.works():
            return False
    impl = backend(method or "iptables")
    if not impl.exists(table_name(root_pid)):
        return False
    impl.remove(table_name(root_pid))
    return True
