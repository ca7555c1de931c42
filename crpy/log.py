"""Logging the way criu does it: -v[N] sets the level, -o FILE sends the log to a file.

Levels follow criu: 0 silent, 1 errors, 2 warnings (default), 3 info, 4 debug.  The log file, when
given, is relative to the images directory unless it is an absolute path, as with criu.  Lines
read "(   12.345) I: message": milliseconds since crpy started, the level's letter, the text.

`log` is crpy's own small logger, not the standard `logging` module: that one costs about 5 ms
of start-up (it imports traceback, string, threading ...) and crpy needs four methods of it.
A log line for the terminal that shows a progress line (crpy.progress, log.status) goes through
it: the progress line is erased first, so log lines are never mixed into it.
"""

import os
import sys
import time

_START = time.monotonic()
DEBUG, INFO, WARNING, ERROR, SILENT = 10, 20, 30, 40, 60
_LEVELS = {0: SILENT, 1: ERROR, 2: WARNING, 3: INFO}
_LETTERS = {DEBUG: "D", INFO: "I", WARNING: "W", ERROR: "E"}


class Log:
    """debug/info/warning/error(msg, *args) with %-formatting, to one stream."""

    def __init__(self):
        self.level, self.stream, self.status = WARNING, None, None
        self.erase_first = ""       # "\r\x1b[K" in a restored child writing to the progress's terminal

    def debug(self, msg, *args, exc_info=False):
        self._emit(DEBUG, msg, args, exc_info)

    def info(self, msg, *args):
        self._emit(INFO, msg, args)

    def warning(self, msg, *args):
        self._emit(WARNING, msg, args)

    def error(self, msg, *args):
        self._emit(ERROR, msg, args)

    def enabled(self, level):
        return level >= self.level

    def _emit(self, level, msg, args, exc_info=False):
        if level < self.level:
            return
        stream = self.stream if self.stream is not None else sys.stderr
        text = msg % args if args else msg
        if exc_info:
            import traceback

            text += "\n" + traceback.format_exc().rstrip()
        line = f"{self.erase_first}({(time.monotonic() - _START) * 1e3:9.3f}) {_LETTERS[level]}: {text}\n"
        try:
            if self.status is not None and self.status.stream is stream:
                self.status.print(line)       # the progress line is erased first
            else:
                stream.write(line)
                stream.flush()
        except (OSError, ValueError):         # a closed or broken log stream never fails the run
            pass

    def flush(self):
        if self.stream is not None:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def lift(self, above):
        """Write from now on through a copy of the stream's fd numbered above `above` (the fds
        below are about to become a restored task's).  The old stream is kept open (returned),
        never closed: its fd number belongs to the task now.  (Called in a restored child, whose
        lines to the terminal of the parent's progress line erase that line first.)"""
        import fcntl

        old = self.stream if self.stream is not None else sys.stderr
        if isinstance(old, _FdStream) and old.fd >= above:
            return old                        # a tree's task: its parent lifted it already
        try:
            old.flush()
            new = fcntl.fcntl(old.fileno(), fcntl.F_DUPFD_CLOEXEC, above)
        except (OSError, ValueError):
            return old
        self.stream = _FdStream(new)
        from crpy import progress

        if progress.drawn_on(old):            # the parent's progress line is there: erase it first
            self.erase_first = "\r\x1b[K"
        self.status = None                    # drawn by the parent only
        return old


class _FdStream:
    """A line-at-a-time text stream straight onto an fd: what a restored child logs through
    (an io text file costs a few hundred microseconds of copied pages in each task of a tree)."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd

    def write(self, text):
        data = text.encode(errors="replace")
        while data:
            data = data[os.write(self.fd, data):]

    def flush(self):
        pass


log = Log()


def setup(verbosity, log_file=None, images_dir=None):
    """Level from criu's verbosity; the log goes to log_file (under images_dir unless absolute),
    or to stderr.  OSError when the file cannot be opened."""
    log.level = _LEVELS.get(verbosity, DEBUG)
    if log.stream is not None and log.stream not in (sys.stderr, sys.__stderr__):
        try:
            log.stream.close()
        except OSError:
            pass
    log.stream = None
    if log_file:
        if images_dir and not os.path.isabs(log_file):
            from crpy.images.create import image_opener

            # beside the images: made like an image (0600, never through a planted link)
            log.stream = open(os.path.join(images_dir, log_file), "w", opener=image_opener)
        else:                     # a path of the user's own choosing (-o /dev/stderr ...)
            log.stream = open(log_file, "w")
    return log
