"""The embedding API for migration tools and harnesses.

    stats = crpy.dump(pid, "imgs", leave_running=True)
    stats = crpy.api.pre_dump(pid, "r2", prev_images_dir="../r1")   # pre-copy rounds
    pid = crpy.restore("imgs", detach=True)

Migration tools (P.Haul-style) drive the same steps as objects:

    rounds = PreDump(pid, "work")                 # work/pre1, work/pre2 ... then work/dump
    rounds.round(); rounds.round(); rounds.dump()  # each returns the round's statistics
    server = PageServer("dst", port=0).start()     # one dump --page-server into dst, in a thread
    crpy.api.dump(pid, "src", page_server=True, address="127.0.0.1", port=server.port); server.wait()
    m = Migration(pid, "host", port, "work", max_rounds=3, on_round=print)   # to `crpy receive`
    result = m.run()                               # .rounds (pages, bytes, dirty rate, time), .frozen_seconds

They raise crpy.errors.CrpyError subclasses on failure; keyword names are those of
crpy.options (criu's option names with underscores).
"""

from crpy.options import DumpOptions, RestoreOptions


def dump(pid, images_dir, **opts):
    """Dump the tree under `pid` into `images_dir`; returns a dict of statistics."""
    from crpy.dump.pipeline import run_dump

    return run_dump(DumpOptions(pid=pid, images_dir=images_dir, **opts))


def pre_dump(pid, images_dir, prev_images_dir=None, **opts):
    """One pre-dump round: the tree's memory into `images_dir`, and the tree runs on.  With
    prev_images_dir (relative to images_dir) only pages written since that round are saved;
    end the chain with dump(..., prev_images_dir=REL, track_mem=True)."""
    from crpy.dump.pipeline import run_dump

    return run_dump(DumpOptions(pid=pid, images_dir=images_dir, pre_dump=True, leave_running=True,
                                track_mem=True, prev_images_dir=prev_images_dir, **opts))


def restore(images_dir, **opts):
    """Restore the tree in `images_dir`.  With detach=True returns the root pid at once;
    otherwise waits for the root task and returns its exit status, as criu does."""
    from crpy.restore.pipeline import run_restore

    return run_restore(RestoreOptions(images_dir=images_dir, **opts))


class PreDump:
    """Pre-copy rounds of the tree under `pid` into work_dir/pre1, pre2 ... (each after the first
    saves only pages written since the previous), ended by dump() into work_dir/dump.  Extra
    options (e.g. page_server=True, address=, port=) go to every round.  .rounds: their stats."""

    def __init__(self, pid, work_dir, **opts):
        self.pid, self.work_dir, self.opts, self.rounds = pid, work_dir, opts, []

    def _dir(self, name):
        import os

        path = os.path.join(self.work_dir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def round(self, **opts):
        """One more round; opts for this round only (e.g. the port of this round's page server)."""
        n = len(self.rounds) + 1
        prev = f"../pre{n - 1}" if n > 1 else None
        stats = pre_dump(self.pid, self._dir(f"pre{n}"), prev_images_dir=prev, **{**self.opts, **opts})
        self.rounds.append(stats)
        return stats

    def dump(self, **opts):
        """The final dump: only what changed since the last round (the tree is killed unless
        leave_running=True)."""
        prev = f"../pre{len(self.rounds)}" if self.rounds else None
        return dump(self.pid, self._dir("dump"), prev_images_dir=prev, track_mem=prev is not None,
                    **{**self.opts, **opts})


class PageServer:
    """`crpy page-server` (receive=False) or `crpy receive` (receive=True) in this process: it
    listens at once (.port), serves one connection in a thread after start(); wait() returns
    when that session ended well and raises crpy.errors.CrpyError (one line) if not."""

    def __init__(self, images_dir, address="127.0.0.1", port=0, receive=False):
        import os

        from crpy.pageserver.server import listen

        os.makedirs(images_dir, exist_ok=True)
        self.images_dir, self.receive = images_dir, receive
        self.listener, (self.address, self.port) = listen(address, port)
        self.error, self.thread = None, None

    def start(self):
        import threading

        self.thread = threading.Thread(target=self._serve, daemon=True, name="crpy-page-server")
        self.thread.start()
        return self

    def _serve(self):
        from crpy.migrate.receive import _Restorer
        from crpy.pageserver.server import Refused, Session, accept

        try:
            with self.listener:
                conn, _ = accept(self.listener)
            with conn:
                Session(conn, self.images_dir, receive=_Restorer() if self.receive else None).serve()
        except (Refused, OSError) as e:
            self.error = e

    def wait(self, timeout=None):
        from crpy.errors import CrpyError

        self.thread.join(timeout)
        if self.thread.is_alive():
            raise CrpyError(f"page server on port {self.port}: its session did not end in {timeout} s")
        if self.error is not None:
            raise CrpyError(f"page server: {self.error}")


def Migration(pid, host, port, work_dir, max_rounds=5, min_rounds=1, on_round=None, **opts):
    """A pre-copy migration to `crpy receive` at host:port; .run() -> result with .pid, .rounds
    (crpy.migrate.source.Round: pages, bytes_sent, seconds, dirty_rate) and .frozen_seconds;
    on_round(Round) is called after each round (the final dump's too).  opts: lazy=True (post-copy),
    restore_mode="lazy" (default: the destination runs the tree before its memory is filled) or
    "eager", and those of crpy.migrate.source.Migration."""
    from crpy.migrate.source import Migration as _Migration

    return _Migration(pid, host, port, work_dir, max_rounds, min_rounds, on_round, **opts)
