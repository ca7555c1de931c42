"""Every fault point of dump and restore, crpy SIGKILLed at random moments, and Ctrl-C (issue 13).

The victim is zdtm tree5: 5 processes with memory, file offsets, pipes and (in the root) an
unlinked file, which the restore makes again as a ghost on disk for its time.

  dump points    : CRPY_FAULT=POINT for each of crpy.faults.DUMP_POINTS (and per-task points in
                   the last task too; and each on zdtm vector, which checks its ymm registers): one error line, every task of the tree exactly as before
                   (maps, so no parasite mapping; fds and offsets; signal and tracer status), no
                   file left in the work directory, and the tree then passes its own check
                   (memory patterns, offsets, piped bytes).
  restore points : one dump; then a restore failing at each of crpy.faults.RESTORE_POINTS and at
                   each restorer step: one error line, no task of the tree left, no ghost file
                   or link, no file lock held (the root's flock); and at the end a restore that works and PASSes.
  kills          : crpy SIGKILLed at CRPY_KILL_MOMENTS (default 10; `make reliability` runs
                   50) random moments of a `dump -R` (the tree runs on untouched: the parasite
                   cures itself) and of a restore (all tasks or none: before the go the restored
                   tasks die with crpy), and no ghost file is left (crpy.resources.ghost_janitor);
                   the same at two chosen moments, crpy paused with the ghost made or right before
                   the go.
  Ctrl-C         : SIGINT to crpy paused at a fault point (POINT:pause) of a dump or a restore
                   behaves like the failure there.
"""

import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from crpy import faults
from tests.zdtm import harness, procstate
from tests.zdtm.procs import kill_and_reap, proc_state, reap_strays
from tests.zdtm.test_sacred import assert_one_error_line, start_paused, wait_stopped_by_sigint

VICTIM = "tree5"
KILL_MOMENTS = int(os.environ.get("CRPY_KILL_MOMENTS", "10"))
PER_TASK_IN_LAST = ("after-collect", "after-infect", "after-pages", "before-cure", "mid-cure", "after-task-images")
PER_TASK_RESTORE_IN_LAST = ("restore-after-fork", "restore-after-fds", "restore-before-ready")
GONE_WAIT = 10.0
SELF_CURE_WAIT = 10.0    # a parasite cures itself once its task is scheduled: late on a loaded machine

pytestmark = pytest.mark.usefixtures("subreaper")


def _start(workdir, name=VICTIM):
    os.makedirs(workdir, exist_ok=True)
    test = harness.ZdtmTest(name, str(workdir))
    test.start()
    if name == VICTIM:
        assert len(test.tree) == 5, f"{VICTIM} should be 5 processes: {test.tree}"
    else:
        test.tree = test.tree or [test.pid]
    return test


def _kill_tree(test, pids=None):
    for pid in pids or test.tree:
        kill_and_reap(pid)
    test.pid = None
    reap_strays()


@pytest.fixture
def tree(tmp_path, request):
    test = _start(tmp_path / "work", getattr(request, "param", VICTIM))
    yield test
    _kill_tree(test)


def dump_argv(test, images, *more):
    """crpy dump of the test into images, with its desc.py options (tree5: --file-locks)."""
    return ("dump", *more, "-t", test.pid, "-D", images, "-v4", "-o", "dump.log", *test.opts.get("dump", []))


def states(test):
    return {pid: procstate.snapshot(pid) for pid in test.tree}


def assert_tree_untouched(test, before, when, wait=SELF_CURE_WAIT):
    """The tree's state (signal mask & co) is `before` again within `wait` s: polled, never read
    once, as crpy exits at once (os._exit) and a task may be a moment from its last sigreturn."""
    deadline = time.monotonic() + wait
    while True:
        diffs = [f"pid {pid}: " + "; ".join(d) for pid, snap in before.items()
                 if (d := procstate.differences(snap, procstate.snapshot(pid)))]
        if not diffs or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert not diffs, f"{when}: " + " | ".join(diffs)
    for pid, snap in before.items():
        assert not procstate.parasite_leftovers(procstate.snapshot(pid)["maps"]), f"pid {pid}: parasite left"


def assert_passes(test):
    passed, reason = test.stop()
    assert passed, f"{VICTIM} no longer passes its own check: {reason}\n{test.outfile_text()}"


def listing(directory):
    return sorted(os.listdir(directory))


def assert_tree_gone(pids, when):
    deadline = time.monotonic() + GONE_WAIT
    while True:
        reap_strays()
        alive = [(p, proc_state(p)) for p in pids if proc_state(p) is not None]
        if not alive:
            return
        assert time.monotonic() < deadline, f"{when}: tasks left behind: {alive}"
        time.sleep(0.02)


def assert_names_back(directory, names, when):
    """The directory holds `names` again (the ghosts' janitor may need a moment after a kill)."""
    deadline = time.monotonic() + GONE_WAIT
    while listing(directory) != names and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listing(directory) == names, f"{when}: left {sorted(set(listing(directory)) - set(names))}"


def assert_no_locks(pids):
    with open("/proc/locks") as f:
        held = [l for l in f if any(f" {p} " in l for p in pids)]
    assert not held, f"file locks left: {held}"


# ------------------------------------------------------------------------------------ dump

DUMP_CASES = list(faults.DUMP_POINTS) + [f"{p}@last" for p in PER_TASK_IN_LAST]


@pytest.mark.parametrize("fault", DUMP_CASES)
def test_failed_dump_leaves_tree_untouched(tree, tmp_path, fault):
    _failed_dump(tree, tmp_path, fault)


@pytest.mark.parametrize("tree", ["vector"], indirect=True)
@pytest.mark.parametrize("fault", faults.DUMP_POINTS)
def test_failed_dump_keeps_registers(tree, tmp_path, fault):
    """vector spins with values in every ymm register and checks them: each failure point gives
    back every register."""
    _failed_dump(tree, tmp_path, fault)


def _failed_dump(tree, tmp_path, fault):
    fault = fault.replace("@last", f"@{max(tree.tree)}")   # tree5's last fork: a leaf, dumped last
    before, names = states(tree), listing(tree.workdir)
    proc = harness.run_crpy(*dump_argv(tree, tmp_path / "images"), env={"CRPY_FAULT": fault})
    assert_one_error_line(proc.returncode, proc.stderr)
    assert "fault point " + fault.split("@")[0] in proc.stderr, proc.stderr
    assert_tree_untouched(tree, before, f"after a dump failed at {fault}")
    assert listing(tree.workdir) == names
    assert_passes(tree)


# --------------------------------------------------------------------------------- restore

@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    """tree5 dumped once (the tree is gone): (test, images dir, the work dir's names)."""
    base = tmp_path_factory.mktemp("faults-restore")
    test = _start(base / "work")
    images = base / "images"
    images.mkdir()
    try:
        harness.dump(test.pid, str(images), extra=test.opts.get("dump", []))
        harness.check_tree_gone(test.tree)
    except harness.HarnessError as e:
        _kill_tree(test)
        pytest.fail(f"dump of {VICTIM} failed: {e}")
    test.root, test.pid = test.pid, None
    yield test, images, listing(test.workdir)
    _kill_tree(test)


def restore_cases():
    last = [f"{p}@last" for p in PER_TASK_RESTORE_IN_LAST]
    blob_steps = [p for p in faults.RESTORER_POINTS          # tree5 has no timers, no AIO (test_aio)
                  if p not in ("restorer:timers", "restorer:aio")]
    return list(faults.RESTORE_POINTS) + last + blob_steps


def _restore_argv(images, pidfile):
    return ("restore", "-D", images, "-d", "--pidfile", pidfile, "-v4", "-o", "restore.log")


@pytest.mark.parametrize("fault", restore_cases())
def test_failed_restore_leaves_nothing(dumped, tmp_path, fault):
    test, images, names = dumped
    fault = fault.replace("@last", f"@{max(test.tree)}")
    work = tmp_path / "images"
    shutil.copytree(images, work)
    proc = harness.run_crpy(*_restore_argv(work, tmp_path / "pid"), env={"CRPY_FAULT": fault})
    assert_one_error_line(proc.returncode, proc.stderr)
    assert_tree_gone(test.tree, f"after a restore failed at {fault}")
    assert listing(test.workdir) == names, "a ghost file or link left behind"
    assert_no_locks(test.tree)


# ------------------------------------------------------------------------------------ kills

def _rng():
    seed = int(os.environ.get("CRPY_KILL_SEED", str(int(time.time()))))
    print(f"kill moments seed {seed} (CRPY_KILL_SEED)")
    return random.Random(seed)


def _timed(argv, env=None):
    started = time.monotonic()
    proc = subprocess.run(harness.crpy_command(*argv), cwd=harness.REPO, env=harness.crpy_env(env),
                          capture_output=True, text=True, timeout=harness.CRPY_TIMEOUT)
    assert proc.returncode == 0, f"the run used for timing failed: {proc.stderr}"
    return time.monotonic() - started


def _killed_at(argv, delay):
    """crpy started with argv and SIGKILLed after delay s; True if it had ended by itself."""
    proc = subprocess.Popen(harness.crpy_command(*argv), cwd=harness.REPO, env=harness.crpy_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    ended = proc.poll() is not None
    proc.kill()
    proc.wait()
    return ended


def test_dump_killed_at_random_moments(tree, tmp_path):
    rng = _rng()
    before, names = states(tree), listing(tree.workdir)
    duration = _timed(dump_argv(tree, tmp_path / "timing", "-R"))
    assert_tree_untouched(tree, before, "after a complete --leave-running dump")
    finished = 0
    for i in range(KILL_MOMENTS):
        delay = rng.uniform(0, duration)
        finished += _killed_at(dump_argv(tree, tmp_path / f"kill{i}", "-R"), delay)
        assert_tree_untouched(tree, before, f"crpy killed {delay:.3f} s into a {duration:.2f} s dump",
                              wait=SELF_CURE_WAIT)
    print(f"dump killed at {KILL_MOMENTS} moments of {duration:.2f} s, {finished} after it ended: tree untouched")
    assert listing(tree.workdir) == names
    assert_passes(tree)


def test_link_remap_dump_killed_leaves_no_link(tmp_path):
    """ghost_shared holds a file unlinked under one name but linked under another: a dump with
    --link-remap links it back; crpy SIGKILLed once every image is written (after-images) must
    leave no link (the ghosts' janitor removes it) and the task untouched."""
    test = harness.ZdtmTest("ghost_shared", str(tmp_path))
    test.start()
    try:
        images = tmp_path / "images"
        images.mkdir()
        names, before = listing(tmp_path), states(test)
        proc, _ = _paused(dump_argv(test, images, "--link-remap"), "after-images")
        assert any(".crpy-link-remap." in n for n in listing(tmp_path)), "the dump made no link: nothing tested"
        proc.kill()
        proc.wait()
        proc.stderr.close()
        assert_names_back(tmp_path, names, "crpy killed after it linked a file back")
        assert_tree_untouched(test, before, "crpy killed after the images", wait=SELF_CURE_WAIT)
        assert_passes(test)
    finally:
        _kill_tree(test)


def _settled(tree, wait=10.0):
    """The tasks of tree alive after crpy was killed: all or none once the restored tasks'
    PDEATHSIG and their parents' deaths have gone through (0.3 s at least; on a loaded machine a
    task that has its signal may still be on its way out: up to `wait` s more for all or none)."""
    time.sleep(0.3)
    deadline = time.monotonic() + wait
    while True:
        reap_strays()
        alive = [p for p in tree if proc_state(p) not in (None, "Z", "X")]
        if len(alive) in (0, len(tree)) or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_restore_killed_at_random_moments(tmp_path):
    rng = _rng()
    test = _start(tmp_path / "work")
    try:
        images = tmp_path / "images"
        images.mkdir()
        harness.dump(test.pid, str(images), extra=test.opts.get("dump", []))
        harness.check_tree_gone(test.tree)
        root, names = test.pid, listing(test.workdir)
        argv = _restore_argv(images, tmp_path / "pid")
        duration = _timed(argv)
        _kill_tree(test)
        counts = {"none": 0, "all": 0}
        for _ in range(KILL_MOMENTS):
            delay = rng.uniform(0, duration)
            _killed_at(argv, delay)
            alive = _settled(test.tree)
            if alive:
                assert len(alive) == len(test.tree), (f"crpy killed {delay:.3f} s into a {duration:.2f} s "
                                                      f"restore left {alive} of {test.tree}")
                assert all(proc_state(p) != "T" for p in alive)
                counts["all"] += 1
                _kill_tree(test)
            else:
                assert_tree_gone(test.tree, f"crpy killed {delay:.3f} s into a restore")
                counts["none"] += 1
            assert_names_back(test.workdir, names, f"crpy killed {delay:.3f} s into a restore")
        print(f"restore killed at {KILL_MOMENTS} moments of {duration:.2f} s: {counts['none']} left no task, "
              f"{counts['all']} after the go (whole tree running); no ghost file left")
        harness.restore(str(images), root)
        test.pid = root
        assert_passes(test)
    finally:
        _kill_tree(test)


@pytest.mark.parametrize("fault", ["restore-after-ghosts", "restore-after-fork@last", "restore-before-go"])
def test_restore_killed_at_a_point(dumped, tmp_path, fault):
    test, names, fault, proc, _ = paused_restore(dumped, tmp_path, fault)
    proc.kill()
    proc.wait()
    proc.stderr.close()
    assert_tree_gone(test.tree, f"after crpy was killed at {fault}")
    assert_names_back(test.workdir, names, f"after crpy was killed at {fault}")


def test_restore_killed_right_after_the_go(dumped, tmp_path):
    """The go given, the restore is committed: crpy killed then leaves the whole tree running
    (no task still dies with it), and the tree passes its check."""
    test, names, _, proc, _ = paused_restore(dumped, tmp_path, "restore-after-go")
    proc.kill()
    proc.wait()
    proc.stderr.close()
    time.sleep(0.5)
    reap_strays()
    alive = [p for p in test.tree if proc_state(p) not in (None, "Z", "X")]
    assert alive == sorted(test.tree), f"after the go, crpy killed: only {alive} of {test.tree} run on"
    assert_names_back(test.workdir, names, "crpy killed right after the go")
    test.pid = test.root
    with open(test.outfile, "rb") as f:
        as_dumped = f.read()
    try:
        assert_passes(test)
    finally:                              # the images stay restorable for the tests that follow
        with open(test.outfile, "wb") as f:
            f.write(as_dumped)


# ----------------------------------------------------------------------------------- Ctrl-C

def _paused(argv, fault):
    """crpy started with CRPY_FAULT=fault:pause, leading a session (a terminal's Ctrl-C reaches its
    group); (Popen, stderr so far) once it says it paused."""
    return start_paused(argv, f"{fault}:pause", "crpy-fault: paused at", new_session=True)


def paused_restore(dumped, tmp_path, fault):
    """A restore of a copy of the dumped images paused at fault (@last: in the last task);
    (test, its work dir's names, the fault, Popen, stderr so far)."""
    test, images, names = dumped
    fault = fault.replace("@last", f"@{max(test.tree)}")
    work = tmp_path / "images"
    shutil.copytree(images, work)
    proc, seen = _paused(_restore_argv(work, tmp_path / "pid"), fault)
    return test, names, fault, proc, seen


def _interrupt(proc, seen):
    """Ctrl-C: SIGINT to crpy's whole process group, as a terminal sends it (crpy leads its own)."""
    os.killpg(proc.pid, signal.SIGINT)
    wait_stopped_by_sigint(proc)
    stderr = seen + proc.stderr.read().decode()
    proc.stderr.close()
    lines = [l for l in stderr.splitlines() if l.strip() and not l.startswith("crpy-fault:")]
    assert_one_error_line(proc.returncode, "\n".join(lines))


@pytest.mark.parametrize("fault", ["after-seize", "after-infect@last", "after-pages", "before-cure", "after-cure",
                                   "after-tree-images"])
def test_dump_interrupted(tree, tmp_path, fault):
    fault = fault.replace("@last", f"@{max(tree.tree)}")
    before, names = states(tree), listing(tree.workdir)
    proc, seen = _paused(dump_argv(tree, tmp_path / "images"), fault)
    _interrupt(proc, seen)
    assert_tree_untouched(tree, before, f"after Ctrl-C at {fault}")
    assert listing(tree.workdir) == names
    assert_passes(tree)


@pytest.mark.parametrize("fault", ["restore-after-ghosts", "restore-after-fork@last", "restore-before-go"])
def test_restore_interrupted(dumped, tmp_path, fault):
    test, names, fault, proc, seen = paused_restore(dumped, tmp_path, fault)
    _interrupt(proc, seen)
    assert_tree_gone(test.tree, f"after Ctrl-C at {fault}")
    assert listing(test.workdir) == names, "a ghost file or link left behind"


def test_restore_after_the_failures(dumped, tmp_path):
    """After all the failed restores the images still restore, and the tree passes its check."""
    test, images, _ = dumped
    harness.restore(str(images), test.root)
    test.pid = test.root
    harness.check_tree_back(test.tree)
    assert_passes(test)


# --------------------------------------------------------------------------- network lock

def _network_locks():
    """Tables crpy's network lock left (crpy.netlock: nftables table inet crpy-PID)."""
    if not shutil.which("nft"):
        pytest.skip("nft is missing (tools/install-deps.sh installs nftables): no network lock to look for")
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return [line.split()[-1] for line in out.splitlines() if "crpy-" in line]


@pytest.mark.parametrize("tree", ["udp_sockets"], indirect=True)
@pytest.mark.parametrize("fault", faults.DUMP_POINTS)
def test_failed_dump_lifts_the_network_lock(tree, tmp_path, fault):
    """udp_sockets holds bound UDP ports, which a dump that kills the tree locks: a dump failing at
    any point lifts the lock (its datagrams flow again: the test passes)."""
    _failed_dump(tree, tmp_path, fault)
    assert f"crpy-{tree.pid}" not in _network_locks(), f"the network lock is left after a dump failed at {fault}"


@pytest.mark.parametrize("tree", ["udp_sockets"], indirect=True)
def test_dump_killed_leaves_no_network_lock(tree, tmp_path):
    """crpy SIGKILLed with the lock taken (paused once every image is written): the janitor
    (crpy.netlock.janitor) lifts it, and the tree runs on untouched."""
    images = tmp_path / "images"
    images.mkdir()
    before = states(tree)
    proc, _ = _paused(dump_argv(tree, images), "after-images")
    assert f"crpy-{tree.pid}" in _network_locks(), "the dump took no network lock: nothing tested"
    proc.kill()
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + GONE_WAIT
    while f"crpy-{tree.pid}" in _network_locks() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"crpy-{tree.pid}" not in _network_locks(), "the network lock of a killed crpy is left"
    assert_tree_untouched(tree, before, "crpy killed with the network lock taken", wait=SELF_CURE_WAIT)
    assert_passes(tree)
