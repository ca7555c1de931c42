"""What every benchmark of bench/ does the same way: build its C target, start it and wait until
it says it is ready, time one `crpy` command, dump a target and restore it with images on
/dev/shm, kill and reap what is left, and print per-unit timings.  bench/run.py and the further
benchmarks (tree, threads, files) use these instead of keeping copies of their own."""

import contextlib
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
GNU_TIME = "/usr/bin/time"          # GNU time (make deps installs it): peak RSS of one command


def build_c(workdir, name, source, *flags):
    """Compile C text `source` with gcc FLAGS into workdir/name; returns the binary's path."""
    src, exe = os.path.join(workdir, name + ".c"), os.path.join(workdir, name)
    with open(src, "w") as f:
        f.write(source)
    subprocess.run(["gcc", *flags, "-o", exe, src], check=True)
    return exe


def start_target(argv, ready_file, what, timeout=30, new_session=True):
    """Start argv and wait until it has written its pid and a newline to ready_file.

    `what` names the target in the one-line error ("bench.tree: the tree") when it dies or
    takes longer than timeout seconds; a target that never got ready is killed, not left behind."""
    if os.path.exists(ready_file):
        os.unlink(ready_file)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=new_session)
    deadline = time.monotonic() + timeout
    while not _ready(ready_file):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise SystemExit(f"{what} did not start")
        time.sleep(0.01)
    return proc


def _ready(ready_file):
    try:
        with open(ready_file) as f:
            return f.read().endswith("\n")
    except FileNotFoundError:
        return False


def crpy_seconds(label, *args):
    """Run `python3 -m crpy ARGS` from the project root; the seconds it took.  A failure ends the
    benchmark with one line naming `label` (the benchmark) and crpy's own error."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crpy", *args], cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{label}: crpy {' '.join(args)} failed: {r.stderr.strip()}")
    return dt


def crpy_run(label, *args):
    """(crpy_seconds, crpy's own peak RSS in MiB, crpy's CPU seconds, user + system of all its
    threads: what a loaded machine inflates far less than the seconds): GNU time's %M
    (ru_maxrss), %U and %S of the crpy process,
    started from time's small process (a fork of this benchmark would hand its own peak RSS on
    through exec; time costs a millisecond more); a restored task is not waited for by crpy, so
    its memory is not counted."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", prefix="crpy-bench-rss-") as rss:
        t0 = time.perf_counter()
        r = subprocess.run([GNU_TIME, "-f", "%M %U %S", "-o", rss.name, sys.executable, "-m", "crpy", *args],
                           cwd=ROOT, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"{label}: crpy {' '.join(args)} failed: {r.stderr.strip()}")
        kib, user, system = rss.read().split()[-3:]
        return dt, int(kib) / 1024, float(user) + float(system)


def dump_then_restore(label, proc, images, pids=None, extra=()):
    """(dump seconds, restore seconds): `crpy dump` of proc's tree into images, then, once all
    its tasks (pids, default proc alone) are gone, `crpy restore -d` of it under the same pids.
    extra: options given to both (--tcp-established, ...)."""
    dump = crpy_seconds(label, "dump", "-t", str(proc.pid), "-D", images, *extra)
    proc.wait()
    wait_gone(pids or [proc.pid])
    return dump, crpy_seconds(label, "restore", "-d", "-D", images, *extra)


def wait_gone(pids, timeout=30):
    """Wait (at most timeout seconds) until none of pids exists, reaping the ones that are ours:
    restored tasks come back to us as children while we are a child subreaper."""
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.005)


@contextlib.contextmanager
def killed_after(pids):
    """On leaving, SIGKILL whatever of pids still runs (the restored target) and wait until it is gone."""
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_gone(pids)


@contextlib.contextmanager
def work_dir(prefix, parent=None):
    """A fresh directory (in parent, default the system's temporary one) for sources, binaries
    and ready files, removed on leaving."""
    workdir = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def image_dir(prefix):
    """A fresh images directory on /dev/shm (so the disk does not time itself), removed on leaving."""
    return work_dir(prefix, "/dev/shm")


@contextlib.contextmanager
def bytecode_cached(workdir):
    """os.environ with .pyc files written and read (under workdir), for the commands started
    inside: an installed crpy runs from .pyc files, and without them (PYTHONDONTWRITEBYTECODE=1)
    every crpy command compiles its modules again (~0.2 s here), which is a setting of the
    environment, not crpy's time.  Warm it with one uncounted run of the commands timed."""
    saved = dict(os.environ)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def child_subreaper():
    """Be a child subreaper while inside: `crpy restore -d` leaves the restored tasks to us, to
    kill and reap, instead of to init.  The earlier setting comes back on leaving."""
    libc = ctypes.CDLL(None)
    before = ctypes.c_int(0)
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


def ms_line(name, seconds, digits=2, more=""):
    """`  NAME   median ms  (min ms MORE)` of per-unit times in seconds, the row every benchmark prints."""
    med, best = statistics.median(seconds) * 1e3, min(seconds) * 1e3
    return f"  {name:8s} {med:7.{digits}f} ms  (min {best:.{digits}f} ms{more})"


def per_item_lines(base, full, n, without):
    """The dump and restore rows of a benchmark of n items: (dump s, restore s) rounds `full`
    with them and `base` without, per item over the median without (`without` names it)."""
    lines = []
    for name, k in (("dump", 0), ("restore", 1)):
        b = statistics.median(r[k] for r in base)
        whole = f"; whole {statistics.median(r[k] for r in full):.2f} s, {without} {b:.2f} s"
        lines.append(ms_line(name, [(r[k] - b) / n for r in full], digits=3, more=whole))
    return lines


_PAGE_REPORTING = "/sys/module/page_reporting/parameters/page_reporting_order"
_NO_REPORTING = 11                  # above x86_64's largest buddy order (10): no block qualifies


@contextlib.contextmanager
def steady_host_memory(notes):
    """Free page reporting off while inside, as it was on leaving.  With it on (these VMs boot
    with order 9), every 2 MiB block the guest frees goes back to the host, and the next
    allocation of it faults into the host again: measured, the same 1 GiB dump took 0.6 s or
    3.5 s depending on which blocks tmpfs got (the guest's sys time, not steal).  Such figures
    measure the host, not crpy; a line for `notes` says what was done."""
    before, note = None, None
    try:
        with open(_PAGE_REPORTING) as f:
            before = f.read().strip()
        if int(before) >= _NO_REPORTING:
            note, before = f"free page reporting is off (order {before})", None
        else:
            with open(_PAGE_REPORTING, "w") as f:
                f.write(str(_NO_REPORTING))
            note = (f"free page reporting off for the run (order {before} -> {_NO_REPORTING}, restored after): "
                    "memory freed and taken again would otherwise be faulted in from the host")
    except (OSError, ValueError) as e:
        if before is not None:
            note, before = f"free page reporting stays at order {before} ({e}): memory figures vary with the host", None
    if note:
        notes.append(note)
    try:
        yield
    finally:
        if before is not None:      # what it was, put back
            with open(_PAGE_REPORTING, "w") as f:
                f.write(before)


def run_alone(run):
    """`python3 -m bench.NAME [reps]`: one benchmark's run(reps) by itself (3 reps unless told),
    with free page reporting off (steady_host_memory) and .pyc files kept (bytecode_cached), as
    `make bench` runs it."""
    notes = []
    with steady_host_memory(notes), work_dir("crpy-bench-") as workdir, bytecode_cached(workdir):
        lines = list(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
    for line in notes + lines:
        print(line)
