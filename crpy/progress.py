"""A progress line on the terminal for a dump or a restore that runs over a second.

    progress.enable(sys.stderr)        # the CLI: allowed on stderr, if it is a terminal
    progress.start("dump", tasks=3)    # a pipeline: nothing happens unless enabled
    progress.add_total(nbytes)         # page bytes planned (dump: known task by task)
    progress.bytes_done(nbytes)        # or start(..., poll=fn): fn() -> bytes done so far
    progress.task_done()
    progress.finish()                  # the line goes away

Once the run is past DELAY_S, a side thread draws one line in place ("\\r", erase to the end of
the line) every INTERVAL_S:  crpy dump: 1/3 tasks, 412/1024 MiB, 980 MiB/s, 0:01 left.
Nothing is drawn when stderr is not a terminal, or when the embedding API (not the CLI) runs
the pipeline.  crpy.log writes a log line to the same terminal through print(), which erases
the progress line first (drawn again at the next tick), so -v logs keep their lines.  Only counters and one write per tick: no
rich or tqdm (their import alone would cost more than a small dump).
"""

import os
import time

DELAY_S = 1.0          # a run shorter than this shows nothing (tests: $CRPY_PROGRESS_DELAY_S)
INTERVAL_S = 0.2       # redraw period
MIB = 1 << 20

_stream = None         # where progress may be drawn (a terminal), set by enable()
_current = None        # the Progress of the run in flight


def enable(stream):
    """Allow progress on `stream` when it is a terminal (the CLI calls this with stderr)."""
    global _stream
    try:
        _stream = stream if stream.isatty() else None
    except (AttributeError, ValueError, OSError):
        _stream = None


def drawn_on(stream):
    """Progress may be drawn on `stream` (a forked child of crpy: by its parent)."""
    return _stream is not None and _stream is stream


def disable():
    global _stream
    _stream = None


def start(what, tasks, total_bytes=0, poll=None):
    """Begin the progress of a `what` (dump, restore) of `tasks` tasks; a no-op unless enabled."""
    global _current
    finish()
    if _stream is not None:
        _current = Progress(_stream, what, tasks, total_bytes, poll)
        _current.run()


def add_total(nbytes):
    if _current is not None:
        _current.total_bytes += nbytes


def bytes_done(nbytes):
    if _current is not None:
        _current.done_bytes += nbytes


def task_done():
    if _current is not None:
        _current.done_tasks += 1


def finish():
    """End the progress of the run in flight (its line erased); safe to call at any time."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None


class Progress:
    """The counters of one run and the side thread that draws them."""

    def __init__(self, stream, what, tasks, total_bytes=0, poll=None):
        import threading

        self.stream, self.what, self.tasks, self.total_bytes, self.poll = stream, what, tasks, total_bytes, poll
        self.done_tasks, self.done_bytes = 0, 0
        self.t0 = time.monotonic()
        self.shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crpy-progress", daemon=True)

    def run(self):
        from crpy.log import log

        log.status = self
        self._thread.start()

    def stop(self):
        from crpy.log import log

        self._stop.set()
        self._thread.join()
        if log.status is self:
            log.status = None
        self.clear()

    def _loop(self):
        if self._stop.wait(float(os.environ.get("CRPY_PROGRESS_DELAY_S", DELAY_S))):
            return
        while True:
            self.redraw()
            if self._stop.wait(INTERVAL_S):
                return

    def line(self):
        """The text of the line (no terminal controls)."""
        if self.poll is not None:
            try:
                self.done_bytes = self.poll()
            except Exception:                 # noqa: BLE001 - a progress figure never fails a run
                pass
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = self.done_bytes / elapsed
        parts = [f"{self.done_tasks}/{self.tasks} tasks"]
        if self.total_bytes:
            parts.append(f"{self.done_bytes / MIB:.0f}/{self.total_bytes / MIB:.0f} MiB")
        else:
            parts.append(f"{self.done_bytes / MIB:.0f} MiB")
        parts.append(f"{rate / MIB:.0f} MiB/s")
        parts.append(f"{_clock(self.time_left(elapsed, rate))} left")
        return f"crpy {self.what}: " + ", ".join(parts)

    def time_left(self, elapsed, rate):
        """Seconds left, from the bytes still to move at the rate so far, or from the tasks still
        to do at the pace so far, whichever says more; None while nothing says anything."""
        guesses = []
        if self.total_bytes and self.done_bytes >= max(self.total_bytes // 100, MIB):    # a rate worth the name
            guesses.append(max(self.total_bytes - self.done_bytes, 0) / rate)
        if 0 < self.done_tasks <= self.tasks:
            guesses.append(elapsed / self.done_tasks * (self.tasks - self.done_tasks))
        return max(guesses) if guesses else None

    def redraw(self):
        with self._lock:
            if self._stop.is_set():
                return
            text = self.line()
            try:
                width = os.get_terminal_size(self.stream.fileno()).columns
            except (OSError, ValueError):
                width = 0
            width = width or 80                # a pty nobody sized says 0 columns
            self._write("\r" + text[:max(width - 1, 10)] + "\x1b[K")
            self.shown = True

    def clear(self):
        with self._lock:
            self._erase()

    def print(self, text):
        """Write text (whole lines) where the progress line is: the line is erased first and
        drawn again at the next tick."""
        with self._lock:
            self._erase()
            self._write(text)

    def _erase(self):
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _clock(seconds):
    if seconds is None:
        return "?:??"
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"
