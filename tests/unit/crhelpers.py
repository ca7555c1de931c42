"""Helpers shared by the end-to-end unit tests: build a C target, start it, run crpy, wait for
things, read what the target wrote, and kill what is left.

Tests import these instead of writing their own copies:
    from tests.unit.crhelpers import ROOT, build_c, crpy, start_target, wait_for, read_text
"""

import functools
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NR_PAUSE = 34                       # x86_64
NR_NANOSLEEP = 35
NR_CLOCK_NANOSLEEP = 230             # glibc's nanosleep() and sleep() enter this one
# Images CRIU 4.2 wrote of two small programs (README there); the programs' sources sit beside them.
CRIU_FIXTURES = Path(ROOT) / "tests" / "fixtures" / "criu-4.2"

# (source text, gcc flags) -> the binary built from them in this session.  Several test modules
# build the same target (the parasite victim); gcc runs once for them all.
_built = {}


def build_c(directory, name, source, *flags):
    """Compile C into directory/name with gcc -O2 and FLAGS (as gcc takes them: "-pthread"; an
    "-O1" among them wins over the -O2) and return the binary's path as a str.  source is the
    C text, or a Path of a .c file to build where it is.  The same source with the same flags
    is built once per session (the binary of the first build is returned again); a compile
    error fails the test with gcc's message."""
    if isinstance(source, Path):
        src, key = str(source), (source.read_text(), flags)
    else:
        src, key = os.path.join(str(directory), name + ".c"), (source, flags)
    if key in _built and os.path.exists(_built[key]):
        return _built[key]
    if not isinstance(source, Path):
        with open(src, "w") as f:
            f.write(source)
    exe = os.path.join(str(directory), name)
    r = subprocess.run(["gcc", "-O2", *flags, "-o", exe, src], capture_output=True, text=True)
    assert r.returncode == 0, f"gcc {name}: {r.stderr}"
    _built[key] = exe
    return exe


def start_target(argv, ready, what="the target to start", timeout=20.0, **popen):
    """Start argv in a session of its own, without our stdio, and wait until ready() is true.

    A target that exits first fails the test at once (instead of at the timeout).  popen are
    further subprocess.Popen arguments (cwd, preexec_fn, stdout=PIPE ...)."""
    popen = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "start_new_session": True, **popen}
    p = subprocess.Popen([str(a) for a in argv], **popen)
    try:
        wait_for(lambda: ready() or p.poll() is not None, timeout, what)
        assert p.poll() is None, f"{what}: the target exited with {p.returncode} first"
    except BaseException:
        kill_quietly(p.pid)
        p.wait()
        raise
    return p


@functools.cache
def image_samples():
    """tests/unit/test_images_samples.py as a module (its sample entry of every image kind,
    write_all, crit_decode ...), loaded by path once: tests/unit is not a package."""
    spec = importlib.util.spec_from_file_location("crpy_test_image_samples",
                                                  Path(__file__).with_name("test_images_samples.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def crpy(*args, timeout=120, env=None, preexec_fn=None):
    """Run `python3 -m crpy ARGS` from the project root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "crpy", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env, preexec_fn=preexec_fn)


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


def log_tail(path, n=30):
    """The last n lines of a crpy log (newline first) to append to an assertion message; ""
    when there is no log."""
    try:
        return "\n" + "\n".join(Path(path).read_text().splitlines()[-n:])
    except OSError:
        return ""


class SelfCheckingTarget:
    """A C test target run as `BINARY OUTFILE` that writes "ready" to OUTFILE once set up and, on
    SIGTERM (after its restore), checks itself and writes PASS or FAIL there.  dump() and
    restore() go through crpy with logs in the images directory (tmp/img unless told);
    leaving a `with SelfCheckingTarget(...)` kills what is left of it."""

    def __init__(self, binary, tmp, ready=("ready",), args=(), env=None):
        """Runs `BINARY ARGS... OUTFILE` (args: e.g. the script of an interpreter), with env."""
        self.out, self.images = tmp / "out", tmp / "img"
        self.proc = start_target([binary, *args, self.out], lambda: any(w in read_text(self.out) for w in ready),
                                 env=env)
        self.pid = self.proc.pid

    def dump(self, images=None):
        """`crpy dump`, which must succeed; the dumped task is reaped so its pid is free again."""
        images = images or self.images
        r = crpy("dump", "-t", self.pid, "-D", images, "-v4", "-o", "dump.log")
        assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
        self.proc.wait(timeout=10)

    def restore(self, images=None):
        images = images or self.images
        r = crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log")
        assert r.returncode == 0, r.stderr + log_tail(images / "restore.log")

    def verdict(self, main_sleeps_in=NR_PAUSE, want="PASS"):
        """SIGTERM: the restored target checks itself; assert its verdict is `want` (PASS, or
        FAIL for a target told to break its state) and return all it wrote.

        The SIGTERM waits until the main thread sleeps in its `while (!term) pause();` again.
        `crpy restore -d` returns while the main thread may still be in its restorer (signals
        blocked) and the other threads already run: one of them would take the SIGTERM, set
        the flag, and the main thread then pause()s for ever.  main_sleeps_in=None: no wait
        (a target that polls its flag, as a Python program's main thread does)."""
        if main_sleeps_in is not None:
            wait_for(lambda: sleeps_in(self.pid, main_sleeps_in), what="the restored main thread back in pause()")
        os.kill(self.pid, signal.SIGTERM)
        wait_for(lambda: "PASS" in read_text(self.out) or "FAIL" in read_text(self.out), what="the verdict")
        text = read_text(self.out)
        assert want in text, text
        return text

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill_quietly(self.pid)


def sleeps_in(tid, nr):
    """True while thread tid sleeps in syscall nr (/proc/TID/syscall starts with the number of
    the syscall a sleeping thread last entered; "running" while it runs)."""
    return read_text(f"/proc/{tid}/syscall").split(" ", 1)[0] == str(nr)


def gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def kill_quietly(pid):
    """SIGKILL pid if it still exists (the restored target, whose parent is not us)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
