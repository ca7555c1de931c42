"""Helpers shared by the end-to-end unit tests: build a C target, run crpy, wait for things.

Tests import these instead of writing their own copies:
    from tests.unit.crhelpers import ROOT, build_c, crpy, wait_for, read_text
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_c(directory, name, source, *flags):
    """Compile `source` (C text) into directory/name and return the binary's path."""
    src = os.path.join(str(directory), name + ".c")
    exe = os.path.join(str(directory), name)
    with open(src, "w") as f:
        f.write(source)
    subprocess.run(["gcc", "-O2", *flags, "-o", exe, src], check=True)
    return exe


def crpy(*args, timeout=120, env=None):
    """Run `python3 -m crpy ARGS` from the project root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "crpy", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(pred, timeout=20.0, what="condition"):
    """Poll pred() until it returns something true; that value is returned."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_text(path):
    """A file's text, or "" while it does not exist yet."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""
