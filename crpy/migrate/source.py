"""`crpy migrate`: move a running tree to `crpy receive` on another host (pre-copy).

  connect ─► pre-dump rounds (pages written since the last round only) until the dirty set stops
  shrinking or --max-rounds ─► final dump, frozen: the last pages + every image ─► the receiver
  checks every file's digest and says OK ─► the source tree is killed ─► RESTORE on the receiver
  ─► it answers with the restored root's pid ─► DONE

Every round goes to the receiver through one page-server connection (crpy.pageserver.sink), into
DIR/pre1 .. DIR/preN and DIR/dump there, and is also kept in the local work directory (the same
names), so the local chain is a complete dump too.

What is guaranteed.  Source and destination here may share the pid space (same machine, other
network namespace), and the restore needs the tree's pids free, so the source cannot still exist
when the destination restores.  So: until the receiver has every image of the final dump and has
checked its digests, the source tree is only frozen (seized), never changed; any failure up to
there (the network, a damaged stream, the receiver, a fault) cures and resumes it untouched, drops
the memory tracking, and the receiver removes everything it wrote.  Then the source tree is killed
and the receiver restores.  If that restore fails, the receiver leaves nothing behind and the tree
is restored here from the local copy of the same images (same pids, same state as the final dump),
and migrate fails saying so; only if that local restore fails too is the tree lost (said in the
error).

--restore-mode lazy (the default; eager: the whole memory filled before the tree runs, as
before): every page is on the destination already, in the chain, so the receiver restores with
--lazy-pages from its own images (a local `crpy lazy-pages` forked by its restore worker): the
tree runs there before its memory is filled, and the frozen time ends there.  The receiver
answers DONE once that daemon has every page in; if it fails (its guard then kills the tasks
there) DONE is refused and the tree is restored here as above.

--lazy (post-copy): the pre-copy rounds as above (optional: --max-rounds 0), then a final dump
whose pages stay here, in page pipes while frozen (crpy.dump.held_pages: no copy, so the frozen
time does not grow with memory), drained into the local pages images after (every other image
is sent), a page server on this side serving them (crpy.pageserver.serve, on the address of this end of the connection),
and RESTORE asks the receiver for `crpy restore --lazy-pages` with `crpy lazy-pages --page-server`
fetching from it (crpy.migrate.restore_worker).  The restored tree runs at once; the frozen time
ends there.  migrate then serves pages until the destination's daemon says it has them all (DONE),
and only then returns: the source side exits when every page has arrived.  Killed before that,
the destination's daemon kills the restored tasks in one line (crpy.lazy.daemon: SourceGone).
"""

import os
import time

from crpy.log import log
from crpy.record import dataclass, field

MiB = 1 << 20
RESTORE_MODES = ("lazy", "eager")   # --restore-mode: how the destination restores the pages it has


@dataclass
class Round:
    """One round of a migration: a pre-dump, or the final (frozen) dump."""
    number: int
    kind: str                 # "pre-dump" or "dump"
    pages: int                # pages written in this round (the others are in the parent)
    bytes_sent: int           # everything sent to the receiver, images included
    seconds: float
    dirty_rate: float         # MiB/s of pages the tree wrote between the previous round's start and this one's

    def line(self):
        return (f"round {self.number} ({self.kind}): {self.pages} pages, {self.bytes_sent / MiB:.1f} MiB sent, "
                f"dirty rate {self.dirty_rate:.1f} MiB/s, {self.seconds:.3f} s")


@dataclass
class Result:
    pid: int                  # the restored root, on the destination
    rounds: list = field(default_factory=list)
    frozen_seconds: float = 0.0   # from the final dump's start to the tree running on the destination
    restore_seconds: float = 0.0  # of which the destination's restore (the rest: the final dump)


def _fail(message, hint):
    from crpy.errors import CrpyError

    return CrpyError(message, hint)


def parse_target(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        from crpy.errors import OptionError

        raise OptionError(f"--to {text!r}: not HOST:PORT", "give the address and port `crpy receive` listens on")
    return host.strip("[]"), int(port)


class Migration:
    """migrate(pid) to `crpy receive` at host:port; on_round(Round) is called after each round."""

    def __init__(self, pid, host, port, work_dir, max_rounds=5, min_rounds=1, on_round=None,
                 verbosity=2, log_file=None, lazy=False, dump_opts=None, on_restored=None, restore_mode="lazy"):
        if restore_mode not in RESTORE_MODES:
            from crpy.errors import OptionError

            raise OptionError(f"--restore-mode {restore_mode!r}: not one of {', '.join(RESTORE_MODES)}",
                              "lazy: the tree runs there before its memory is filled; eager: after")
        self.lazy, self.serving, self.on_restored = lazy, None, on_restored
        self.restore_mode = restore_mode
        self.pid, self.host, self.port, self.work_dir = pid, host, port, work_dir
        self.max_rounds, self.min_rounds = max_rounds, min(min_rounds, max_rounds)
        self.on_round, self.verbosity, self.log_file = on_round, verbosity, log_file
        self.dump_opts = dict(dump_opts or {})  # crpy.options.DumpOptions fields for every round
        self.result = Result(pid)

    def run(self):
        from crpy.pageserver.sink import Client

        os.makedirs(self.work_dir, exist_ok=True)
        client = Client.connect(self.host, self.port, keep_local=True)
        tracked = False
        try:
            prev = None
            for n in range(1, self.max_rounds + 1):
                tracked = True
                r = self._round(client, f"pre{n}", prev, n)
                prev = f"pre{n}"
                rounds = self.result.rounds
                if n >= self.min_rounds and len(rounds) > 1 and r.pages >= rounds[-2].pages:
                    break                   # the dirty set stopped shrinking: more rounds won't help
            started = time.monotonic()
            tracked = False                 # the final dump ends the tracking, failed or not
            self._final(client, prev)
        except BaseException:
            client.close()                  # the receiver drops everything it got
            if tracked:
                _drop_tracking(self.pid)
            raise
        # the source tree is gone now: the receiver has every image, checked
        try:
            asked = time.monotonic()
            request = b"dump"
            if self.serving is None and self.restore_mode == "lazy":
                request += b"\0local"     # every page is there: restored lazily from its own images
            if self.serving is not None:
                request += b"\0" + self.serving.request()
                self.serving.start()
            self.result.pid = client.call(_restore_cmd(), 0, request, what="RESTORE")
            self.result.frozen_seconds = time.monotonic() - started
            self.result.restore_seconds = time.monotonic() - asked
            if self.serving is not None:
                self.serving.drain_in_background()
            client.call(_done_cmd(), what="DONE")
        except BaseException as e:
            client.close()
            if self.serving is not None:
                self.serving.close()
                self.serving.complete_local()      # the held pages, for the restore here
            self._restore_here(e)
        client.close()
        log.info("Migration of %d done: frozen %.3f s", self.pid, self.result.frozen_seconds)
        if self.serving is not None:
            if self.on_restored is not None:
                self.on_restored(self.result)
            self.serving.run()             # until the destination has every page
        return self.result

    def _final(self, client, prev):
        """The final dump, frozen: the pages written since the last round and every image
        (lazy: the pages images stay here, served by a page server started now)."""
        if not self.lazy:
            return self._round(client, "dump", prev, len(self.result.rounds) + 1)
        from crpy.dump import held_pages
        from crpy.migrate.lazy import LazyServing

        # listening before the final dump: once it is done the source tree is gone
        self.serving = LazyServing(os.path.join(self.work_dir, "dump"), client.sock.getsockname()[0])
        client.pages_local = True
        try:
            r = self._round(client, "dump", prev, len(self.result.rounds) + 1, lazy_pages=True)
            self.serving.held = held_pages.claim(self.serving.images_dir)
            return r
        except BaseException:
            self.serving.close()
            self.serving = None
            raise
        finally:
            client.pages_local = False

    def _round(self, client, name, prev, number, lazy_pages=False):
        from crpy.dump.pipeline import run_dump
        from crpy.options import DumpOptions
        from crpy import pageserver

        images_dir = os.path.join(self.work_dir, name)
        os.makedirs(images_dir, exist_ok=True)
        client.subdir(name)
        sent_before, t0 = client.bytes_sent, time.monotonic()
        # the pages of this round were written since the previous round began (its re-arm)
        since = t0 - self._last_start if self.result.rounds else 0.0
        self._last_start = t0
        pre = name != "dump"
        opts = DumpOptions(pid=self.pid, images_dir=images_dir, pre_dump=pre, leave_running=pre,
                           track_mem=pre or prev is not None, prev_images_dir=f"../{prev}" if prev else None,
                           verbosity=self.verbosity, log_file=self.log_file, lazy_pages=lazy_pages, **self.dump_opts)
        pageserver.attach(images_dir, client)
        try:
            stats = run_dump(opts)
        finally:
            pageserver.detach(images_dir)
        now = time.monotonic()
        pages = stats.get("pages", 0) if pre else _dump_pages(images_dir)
        rate = pages * 4096 / MiB / since if self.result.rounds and since > 0 else 0.0
        r = Round(number, "pre-dump" if pre else "dump", pages, client.bytes_sent - sent_before, now - t0, rate)
        self.result.rounds.append(r)
        log.info("Migration %s", r.line())
        if self.on_round is not None:
            self.on_round(r)
        return r

    def _restore_here(self, error):
        """The destination's restore failed after the source was killed: restore the tree here
        from the local copy of the same images, then fail saying so."""
        from crpy.options import RestoreOptions
        from crpy.restore.pipeline import run_restore

        local = os.path.join(self.work_dir, "dump")
        why = error.one_line() if hasattr(error, "one_line") else str(error)
        try:
            pid = run_restore(RestoreOptions(images_dir=local, detach=True, verbosity=self.verbosity,
                                             log_file="restore-here.log"))
        except Exception as e:  # noqa: BLE001 - said in the one line below
            raise _fail(f"migration of {self.pid} failed at the destination ({why}) and the restore here "
                        f"from {local} failed too: {e}", "the images stay in the work directory") from None
        raise _fail(f"migration of {self.pid} failed at the destination ({why}); the tree was restored "
                    f"here from {local} (pid {pid})", "see the receiver's restore.log") from None


def _restore_cmd():
    from crpy.pageserver import protocol

    return protocol.RESTORE


def _done_cmd():
    from crpy.pageserver import protocol

    return protocol.DONE


def _dump_pages(images_dir):
    """Pages the final dump wrote itself (not in the parent), from its pagemaps."""
    from crpy.images import framing
    from crpy.images.pages import has_data

    total = 0
    for name in os.listdir(images_dir):
        if name.startswith("pagemap-") and not name.startswith("pagemap-shmem"):
            for e in framing.read_image(os.path.join(images_dir, name), "pagemap")[1:]:
                if has_data(e):
                    total += framing.pagemap_nr_pages(e)
    return total


def _drop_tracking(pid):
    """A migration that stops between rounds leaves the tree untracked (the holder ends)."""
    from crpy.dump.memtrack import Tracking

    try:
        track = Tracking(None, pid, None, keep=False)
        track.begin()
        track.abandon()
    except Exception as e:  # noqa: BLE001 - the tree itself is intact; only say it
        log.error("Could not drop the memory tracking of %d: %s", pid, e)


def migrate(pid, to, work_dir, max_rounds=5, min_rounds=1, on_round=None, **kw):
    host, port = parse_target(to)
    return Migration(pid, host, port, work_dir, max_rounds, min_rounds, on_round, **kw).run()
