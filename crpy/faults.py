"""Test-only fault points of the dump (CONTRACTS.md), chosen with CRPY_FAULT=name.

  after-infect   : raise DumpError once the parasite runs (the normal error path must cure and
                   detach the task).
  pause-in-pages : after the first chunk of pages, say so on stderr and sleep 60 s, so a test can
                   SIGKILL crpy in the middle of the page dump.
  after-images   : raise DumpError once every image is written (fds dumped, --link-remap links
                   made), before the tree is killed: nothing the dump made may stay behind.
"""

import os
import sys
import time

from crpy.errors import DumpError

POINTS = ("after-infect", "pause-in-pages", "after-images")


def active():
    return os.environ.get("CRPY_FAULT", "")


def point(name):
    """Called by the dump at each fault point; does nothing unless CRPY_FAULT names it."""
    if active() != name:
        return
    if name in ("after-infect", "after-images"):
        raise DumpError(f"fault point {name}", "CRPY_FAULT is set: a test asked for this failure")
    if name == "pause-in-pages":
        print("crpy-fault: paused in pages", file=sys.stderr, flush=True)
        time.sleep(60)
