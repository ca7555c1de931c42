"""Damaged page data is found by the task that reads it, before any task runs (issue 14's cost).

Each restored task hashes the page chunks it reads as it reads them (crpy.restore.pagecheck); the
pre-fork check skips those chunks.  A dump of pages_mark (a parent and a child, each 4 MiB of
pages marked with their owner and number) is damaged inside one page of the child's: the restore
must refuse in one line naming the pages image and the byte range, exit non-zero, and leave no
task of the tree behind -- forked, perhaps, but never let go (the barrier never saw the tree
ready).  With --check-pages-before-fork the same damage is refused before anything is forked.
The intact dump restores, its tasks checking their chunks, and the test's own check passes.
"""

import os
import pathlib
import shutil

import pytest

from tests.zdtm import harness, procs

pytestmark = pytest.mark.usefixtures("subreaper")

MARK = b"PAGES_MARK C page 0500 "      # a page of the child's


@pytest.fixture
def marked(dump_test):
    test, images = dump_test("pages_mark")
    return test, pathlib.Path(images), test.tree or [test.pid]


def _damage_marked_page(images):
    """Flip a byte of the marked page in its pages image; the image's name."""
    for path in sorted(images.glob("pages-*.img")):
        data = bytearray(path.read_bytes())
        at = data.find(MARK)
        if at >= 0:
            data[at + 1000] ^= 0x10
            path.write_bytes(bytes(data))
            return path.name
    raise AssertionError(f"no page marked {MARK!r} in {images}")


def _restore(images, *extra):
    return harness.run_crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log", *extra, timeout=120)


def _assert_refused(res, images, pids, name):
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 1, f"the restore of damaged pages succeeded: {res.stderr}"
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    assert lines[0].startswith("crpy: error: ") and name in lines[0], lines[0]
    assert "differ from the dump" in lines[0] and "--skip-integrity" in lines[0], lines[0]
    log = (images / "restore.log").read_text()
    assert "tasks stand at their restorer" not in log, f"the tree was let go:\n{log}"
    for pid in pids:
        alive = procs.proc_state(pid) not in (None, "Z", "X")
        if alive:
            procs.kill_and_reap(pid)
        assert not alive, f"pid {pid} is left after the refusal"
    return log


def _copy(images, tmp_path):
    procs.reap_strays()                   # the dumped tree's zombies would hold its pids
    copy = tmp_path / "copy"
    shutil.copytree(images, copy)
    return copy


def test_damaged_pages_are_found_by_the_task_reading_them(marked, tmp_path):
    _, images, pids = marked
    damaged = _copy(images, tmp_path)
    name = _damage_marked_page(damaged)
    log = _assert_refused(_restore(damaged), damaged, pids, name)
    assert " child " in log, "refused before the fork: the tasks were to check their own pages"
    assert "page chunks are checked by the tasks that read them" in log, log


def test_damaged_pages_are_refused_before_the_fork_when_asked(marked, tmp_path):
    _, images, pids = marked
    damaged = _copy(images, tmp_path)
    name = _damage_marked_page(damaged)
    log = _assert_refused(_restore(damaged, "--check-pages-before-fork"), damaged, pids, name)
    assert " child " not in log and "running (" not in log, f"a task was forked:\n{log}"


@pytest.mark.parametrize("extra", [(), ("--check-pages-before-fork",)], ids=["inline", "before-fork"])
def test_intact_pages_restore(marked, extra):
    test, images, pids = marked
    procs.reap_strays()
    try:
        harness.restore(str(images), pids[0], extra=extra)
        log = (images / "restore.log").read_text()
        assert ("page chunks are checked by the tasks" in log) == (not extra), log
        passed, reason = test.stop()
        assert passed, reason
    finally:
        procs.kill_alive(pids)
