"""The target is sacred (issue 2, point 9): a dump that fails or dies half way leaves the task as it was.

Victims are zdtm tests (busyloop runs in user space, nanosleep sleeps in a syscall, mem256 waits in
sigsuspend with 256 MiB to dump, vector spins with values in every ymm register, fpu sleeps with
x87/MXCSR state: their own checks then prove the cure gave back every register).  For each case the task's maps, fds and signal/tracer status are
taken before crpy runs and compared afterwards; no anonymous rwx mapping (a parasite's) may be left,
and the task must still pass its own check (SIGTERM -> PASS).

  after-infect : CRPY_FAULT=after-infect makes the dump fail once the parasite runs: crpy must
                 exit non-zero with one error line and no traceback.
  SIGKILL      : CRPY_FAULT=pause-in-pages stops crpy in the middle of the page dump; it is then
                 SIGKILLed: the parasite must cure itself.
  SIGINT       : the same pause, then Ctrl-C (SIGINT): crpy must cure, exit non-zero, one line.
  any moment   : a `crpy dump --leave-running` is SIGKILLed at fixed fractions of its own duration
                 (from python start-up through seize, infection, pages and cure).
  link-remap   : a `crpy dump --link-remap` that fails after it linked an unlinked file back
                 (CRPY_FAULT=after-images) removes the link: the file system is left as it was too.
                 (A dumper SIGKILLed after making the link: test_faults.py.)
"""

import os
import selectors
import signal
import subprocess
import time

import pytest

from tests.zdtm import harness, procstate

PAUSE_LINE = "crpy-fault: paused in pages"
SELF_CURE_WAIT = 10.0    # a parasite cures itself once its task is scheduled: late on a loaded machine


pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture
def victim(request, tmp_path):
    test = harness.ZdtmTest(request.param, str(tmp_path))
    test.start()
    yield test
    test.kill()


def error_lines(stderr):
    return [l for l in stderr.replace(PAUSE_LINE, "\n").splitlines() if l.strip()]


def assert_one_error_line(rc, stderr):
    assert rc != 0, f"crpy succeeded but should have failed: {stderr}"
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, f"want exactly one error line, got: {lines}"


def assert_untouched(test, before, wait=procstate.SETTLE_BACK):
    """The task looks as before (waiting up to `wait` s for a self-cure), then passes its check."""
    assert_untouched_alive(test, before, "after crpy ended", wait)
    passed, reason = test.stop()
    assert passed, f"{test.name} no longer passes its own check: {reason}\n{test.outfile_text()}"


def assert_untouched_alive(test, before, when, wait=procstate.SETTLE_BACK):
    """The task's maps, fds and signal/tracer status are as before (waiting up to `wait` s: a
    task crpy has just detached is still on its way back into its wait, never read at once)."""
    diffs = procstate.settled_differences(test.pid, before, wait)
    assert not diffs, f"{when}: {test.name} {test.pid} changed: " + "; ".join(diffs)


def start_paused(argv, fault, pause_line, new_session=False):
    """crpy ARGV started with CRPY_FAULT=fault (in a session of its own with new_session); returns
    (Popen, stderr so far) once it has said pause_line."""
    proc = subprocess.Popen(harness.crpy_command(*argv), cwd=harness.REPO, env=harness.crpy_env({"CRPY_FAULT": fault}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=new_session)
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    seen, deadline = b"", time.monotonic() + 60
    while pause_line.encode() not in seen:
        if time.monotonic() > deadline or (proc.poll() is not None and not sel.select(0)):
            proc.kill()
            proc.wait()
            pytest.fail(f"crpy never paused at {fault} (rc {proc.returncode}): {seen.decode()}")
        if sel.select(timeout=0.5):
            seen += os.read(proc.stderr.fileno(), 4096)
    sel.close()
    return proc, seen.decode()


def start_paused_dump(pid, images_dir):
    """Start crpy dump with the pause-in-pages fault; return (Popen, stderr so far) once paused."""
    return start_paused(("dump", "-t", pid, "-D", images_dir, "-v4", "-o", "dump.log"), "pause-in-pages", PAUSE_LINE)


def wait_stopped_by_sigint(proc):
    """crpy, sent SIGINT, ends within 30 s (else it is killed and the test fails)."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("crpy did not stop within 30 s of SIGINT")


def finish(proc, seen):
    rest = proc.stderr.read().decode()
    proc.stderr.close()
    return seen + rest


@pytest.mark.parametrize("victim", ["busyloop", "nanosleep", "mem256", "vector", "fpu"], indirect=True)
def test_failed_dump_after_infect(victim, tmp_path):
    before = procstate.snapshot(victim.pid)
    proc = harness.run_crpy("dump", "-t", victim.pid, "-D", tmp_path, "-v4", "-o", "dump.log",
                            env={"CRPY_FAULT": "after-infect"})
    assert_one_error_line(proc.returncode, proc.stderr)
    assert "after-infect" in proc.stderr, proc.stderr
    assert_untouched(victim, before)


@pytest.mark.parametrize("victim", ["busyloop", "nanosleep", "mem256", "vector", "fpu"], indirect=True)
def test_dumper_killed_in_pages(victim, tmp_path):
    before = procstate.snapshot(victim.pid)
    proc, seen = start_paused_dump(victim.pid, str(tmp_path))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finish(proc, seen)
    assert proc.returncode == -signal.SIGKILL
    assert_untouched(victim, before, wait=SELF_CURE_WAIT)


@pytest.mark.parametrize("victim", ["busyloop", "mem256", "vector"], indirect=True)
def test_dumper_interrupted_in_pages(victim, tmp_path):
    before = procstate.snapshot(victim.pid)
    proc, seen = start_paused_dump(victim.pid, str(tmp_path))
    proc.send_signal(signal.SIGINT)
    wait_stopped_by_sigint(proc)
    stderr = finish(proc, seen)
    assert_one_error_line(proc.returncode, stderr)
    assert_untouched(victim, before, wait=SELF_CURE_WAIT)


KILL_FRACTIONS = (0.05, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97)


def leave_running_dump(pid, images_dir):
    os.makedirs(images_dir, exist_ok=True)
    return subprocess.Popen(harness.crpy_command("dump", "-R", "-t", pid, "-D", images_dir, "-v4", "-o",
                                                 "dump.log"),
                            cwd=harness.REPO, env=harness.crpy_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("victim", ["busyloop", "mem256", "vector"], indirect=True)
def test_dumper_killed_at_any_moment(victim, tmp_path):
    before = procstate.snapshot(victim.pid)
    started = time.monotonic()
    proc = leave_running_dump(victim.pid, str(tmp_path / "timing"))
    assert proc.wait(timeout=120) == 0, "the --leave-running dump used for timing failed"
    duration = time.monotonic() - started
    assert_untouched_alive(victim, before, "after a complete --leave-running dump")
    for fraction in KILL_FRACTIONS:
        proc = leave_running_dump(victim.pid, str(tmp_path / f"kill{fraction}"))
        time.sleep(duration * fraction)
        proc.kill()
        proc.wait()
        assert_untouched_alive(victim, before, f"crpy killed at {fraction:.0%} of a {duration:.2f} s dump",
                               wait=SELF_CURE_WAIT)
    passed, reason = victim.stop()
    assert passed, f"{victim.name} no longer passes its own check: {reason}\n{victim.outfile_text()}"


@pytest.mark.parametrize("victim", ["ghost_shared"], indirect=True)
def test_failed_link_remap_dump_leaves_no_link(victim, tmp_path):
    """ghost_shared holds a file unlinked under one name and linked under another: --link-remap
    links it back under a temporary name; the dump then fails once every image is written
    (after-images): the temporary name must be gone, the task untouched."""
    images = tmp_path / "images"
    images.mkdir()
    names_before = sorted(os.listdir(tmp_path))
    before = procstate.snapshot(victim.pid)
    proc = harness.run_crpy("dump", "--link-remap", "-t", victim.pid, "-D", images, "-v4", "-o", "dump.log",
                            env={"CRPY_FAULT": "after-images"})
    assert_one_error_line(proc.returncode, proc.stderr)
    assert "after-images" in proc.stderr, proc.stderr
    log_text = (images / "dump.log").read_text()
    assert ".crpy-link-remap." in log_text, "the dump never made the link this test is about:\n" + log_text
    assert sorted(os.listdir(tmp_path)) == names_before, [n for n in os.listdir(tmp_path) if "crpy" in n]
    assert_untouched(victim, before)
