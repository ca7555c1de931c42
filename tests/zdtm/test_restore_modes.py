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


@pytest.fixture
def tmpfs_mounts(tmp_path):
    """mount(name, *options): a tmpfs mounted at tmp_path/name; all unmounted at the end."""
    mounted = []

    def mount(name, *options):
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=1g",) + options), "tmpfs", str(point)],
                       check=True, capture_output=True)
        mounted.append(point)
        return point
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_images_on_a_huge_page_tmpfs_restore_and_the_4k_one_gets_a_hint(tmp_path, tmpfs_mounts):
    """mem256 dumped into a tmpfs without huge pages (the -v log hints at huge=within_size) and
    restored, then dumped into one with them (no hint) and restored from there: the test checks
    every byte of its 256 MiB."""
    from crpy.kernel.tmpfs import huge_mode

    small, huge = tmpfs_mounts("small") / "images", tmpfs_mounts("huge", "huge=within_size") / "images"
    assert (huge_mode(str(small.parent)), huge_mode(str(huge.parent))) == ("never", "within_size")
    test = harness.ZdtmTest("mem256", str(tmp_path))
    test.start()
    try:
        for images in (small, huge):
            images.mkdir()
            harness.dump(test.pid, str(images))
            harness.restore(str(images), test.pid)
        hints = [(images / "dump.log").read_text().count("Hint: ") for images in (small, huge)]
        assert hints == [1, 0], f"hint lines in the dump logs (4 KiB tmpfs, huge tmpfs): {hints}"
        passed, reason = test.stop()
        assert passed, f"{reason}\n{test.outfile_text()}"
    finally:
        test.kill()
