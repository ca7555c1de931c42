"""Restore beyond the harness's `restore -d` loop: the same images restored twice (restore must not
change them), and a restore without -d, where crpy waits for the task and returns its exit status."""

import hashlib
import os
import signal
import subprocess
import time

import pytest

from tests.zdtm import harness, procs


pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture
def dumped(dump_test):
    """A busyloop test dumped into tmp_path/images: (test, images dir)."""
    return dump_test("busyloop")


def digest(images):
    """sha256 of every image file (logs and pidfiles aside)."""
    out = {}
    for name in sorted(os.listdir(images)):
        if name.endswith(".img"):
            with open(os.path.join(images, name), "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_same_images_restore_twice(dumped):
    test, images = dumped
    before = digest(images)
    harness.restore(images, test.pid)
    assert digest(images) == before, "restore changed the images"
    procs.kill_and_reap(test.pid)
    harness.restore(images, test.pid)
    passed, reason = test.stop()
    assert passed, f"{reason}\n{test.outfile_text()}"


def test_restore_without_detach_waits_and_returns_the_exit_status(dumped):
    test, images = dumped
    proc = subprocess.Popen(harness.crpy_command("restore", "-D", images, "-v4", "-o", "restore.log"),
                            cwd=harness.REPO, env=harness.crpy_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while procs.proc_state(test.pid) in (None, "Z", "X"):
        assert proc.poll() is None, f"crpy restore exited ({proc.returncode}) before the task was back"
        assert time.monotonic() < deadline, "the task did not come back within 60 s"
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "crpy restore without -d did not wait for the task"
    os.kill(test.pid, signal.SIGTERM)
    rc = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    test.pid = None
    assert rc == 0, f"crpy restore returned {rc} for a task that exited 0: {stderr}"
    assert test.verdict_line() == "PASS", test.outfile_text()
