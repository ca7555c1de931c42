"""Logging the way criu does it: -v[N] sets the level, -o FILE sends the log to a file.

Levels follow criu: 0 silent, 1 errors, 2 warnings (default), 3 info, 4 debug.  The log file, when
given, is relative to the images directory unless it is an absolute path, as with criu.
"""

import logging
import os
import sys

_LEVELS = {0: logging.CRITICAL + 10, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}

log = logging.getLogger("crpy")


def setup(verbosity, log_file=None, images_dir=None):
    level = _LEVELS.get(verbosity, logging.DEBUG)
    log.setLevel(level)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if log_file:
        if images_dir and not os.path.isabs(log_file):
            log_file = os.path.join(images_dir, log_file)
        handler = logging.FileHandler(log_file, mode="w")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("(%(relativeCreated)9.3f) %(levelname).1s: %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    return log
