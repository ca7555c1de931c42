"""Compile the zdtm C tests into tests/zdtm/bin/ (gitignored), each only when its sources are newer.

Every tests/zdtm/NAME.c is one test; all of them link the protocol library lib/zdtmtst.c.  The
binary is written under a temporary name and renamed, so concurrent harness runs never see a half
written file.
"""

import os
import subprocess

ZDTM_DIR = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = os.path.join(ZDTM_DIR, "bin")
LIB_DIR = os.path.join(ZDTM_DIR, "lib")
LIB_C = os.path.join(LIB_DIR, "zdtmtst.c")
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-D_GNU_SOURCE"]
# Extra flags per test, where one needs them (inline asm and target attributes cover the rest).
EXTRA_CFLAGS = {}


class BuildError(Exception):
    """gcc failed on a test; the message holds its output."""


def all_tests():
    """Names of every C test, sorted."""
    return sorted(f[:-2] for f in os.listdir(ZDTM_DIR) if f.endswith(".c"))


def binary(name):
    return os.path.join(BIN_DIR, name)


def _stale(name):
    out = binary(name)
    if not os.path.exists(out):
        return True
    headers = [os.path.join(ZDTM_DIR, h) for h in os.listdir(ZDTM_DIR) if h.endswith(".h")]  # shared by tests
    library = [os.path.join(LIB_DIR, f) for f in os.listdir(LIB_DIR) if f.endswith((".c", ".h"))]  # every helper header too
    sources = [os.path.join(ZDTM_DIR, name + ".c")] + library + headers + [os.path.abspath(__file__)]
    built = os.path.getmtime(out)
    return any(os.path.getmtime(s) > built for s in sources)


def build(names):
    """Compile the named tests that are out of date; returns their binary paths."""
    os.makedirs(BIN_DIR, exist_ok=True)
    for name in names:
        src = os.path.join(ZDTM_DIR, name + ".c")
        if not os.path.exists(src):
            raise BuildError(f"no such zdtm test: {name} (no {src})")
        if not _stale(name):
            continue
        tmp = f"{binary(name)}.tmp{os.getpid()}"
        cmd = ["gcc", *CFLAGS, *EXTRA_CFLAGS.get(name, []), "-o", tmp, src, LIB_C]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"gcc failed for {name}:\n{proc.stderr}")
        os.rename(tmp, binary(name))
    return [binary(n) for n in names]
