"""Image integrity (issue 14) on real dumps: damaged copies are refused before anything is forked.

A dump of the pipe_tree zdtm test (two tasks, pipes with data in flight: every image kind of a
small dump, pages and pipes-data included) is copied, and in each copy one image gets one kind of
damage: bits flipped, cut short, a field set to all ones, a chunk duplicated, a chunk zeroed.
Every copy must be refused by `crpy restore` in one line naming the image, with no task forked
(the restore log shows no child and the image's pids stay free) -- but for the page data, which
each task checks as it reads it (crpy.restore.pagecheck): there a task may be forked, yet none
runs (the tree never stood at its restorers, nothing is left), and `crpy check-images` names
the image, and `crpy show` of it prints JSON or one line with the offset, never a traceback.
The intact dump still restores and passes its own check; a dump that lost its
crpy-digests is refused, and restores with --skip-integrity.
"""

import json
import os
import pathlib
import shutil

import pytest

from crpy.images import digest
from tests.zdtm import harness, procs

pytestmark = pytest.mark.usefixtures("subreaper")

TEST = "pipe_tree"
DAMAGES = ("flip", "truncate", "all_ones", "dup_chunk", "zero_chunk")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(images dir, pids of the tree) of a dump of pipe_tree; the tasks are gone."""
    work = tmp_path_factory.mktemp("work")
    images = tmp_path_factory.mktemp("images")
    test = harness.ZdtmTest(TEST, str(work))
    test.start()
    try:
        harness.dump(test.pid, str(images))
    except harness.HarnessError as e:
        test.kill()
        pytest.fail(f"cannot dump {TEST}: {e}")
    for log in ("dump.log", "dump.stderr"):
        if (images / log).exists():
            (images / log).unlink()
    return images, test.tree or [test.pid]


def _image_names():
    """The image files a dump of the test holds (known without dumping: collection time)."""
    return ["core", "ids", "mm", "fs", "pagemap", "fdinfo", "pages", "inventory", "cpuinfo",
            "pstree", "files", "pipes_data"]


def _files_of(images, kind):
    from crpy.images import magic

    k = magic.kind(kind)
    return sorted(n for n in os.listdir(images) if magic.kind_by_filename(n) is k)


def damage(path, how):
    """Damage the file at path in place, in the middle, so that it differs from what was dumped."""
    data = bytearray(path.read_bytes())
    size = len(data)
    mid = size // 2
    n = max(1, min(4096, size // 4))
    if how == "flip":
        data[mid] ^= 0x24
    elif how == "truncate":
        data = data[:mid]
    elif how == "all_ones":
        data[mid:mid + 8] = b"\xff" * len(data[mid:mid + 8])
    elif how == "dup_chunk":                     # a chunk written twice: the rest moves on
        data[mid:mid] = data[mid - n:mid] if mid >= n else data[:n]
    elif how == "zero_chunk":                    # the first chunk holding anything but zeros
        start = next((a for a in range(0, size, n) if any(data[a:a + n])), 0)
        data[start:start + n] = bytes(len(data[start:start + n]))
    assert bytes(data) != path.read_bytes(), f"{how} would leave {path.name} unchanged"
    path.write_bytes(bytes(data))


def _copy(good_dir, tmp_path):
    procs.reap_strays()                          # the dumped tree's zombies would hold its pids
    shutil.copytree(good_dir, tmp_path / "images")
    return tmp_path / "images"


def _assert_refused_before_fork(res, images, pids, name, forked_ok=False):
    """forked_ok: damaged page data, found by a task as it reads it: forked, but none ran."""
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 1, f"restore of a damaged {name} succeeded: {res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and lines[0].startswith("crpy: error: "), lines
    assert name in lines[0] and "--skip-integrity" in lines[0], lines[0]
    log = (images / "restore.log").read_text()
    if forked_ok:
        assert "tasks stand at their restorer" not in log, f"the tree was let go:\n{log}"
    else:
        assert " child " not in log and "running (" not in log, f"a task was forked:\n{log}"
    assert "restore failed" in log and name in log, log
    for pid in pids:
        alive = procs.proc_state(pid) not in (None, "Z", "X")
        if alive:
            procs.kill_and_reap(pid)
        assert not alive, f"pid {pid} of the damaged image exists after the refusal"


def test_the_dump_wrote_digests_of_every_image(good):
    images, _ = good
    algo, chunk, recorded = digest.read_digests(images)
    on_disk = {n for n in os.listdir(images) if digest.is_image_name(n)}
    assert set(recorded) == on_disk
    for kind in _image_names():
        assert _files_of(images, kind), f"the dump of {TEST} has no {kind} image"
    assert algo == digest.default_algo() and chunk == digest.CHUNK_SIZE
    res = harness.run_crpy("check-images", "-D", images)
    assert res.returncode == 0 and "intact" in res.stdout, res.stderr


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", _image_names())
def test_a_damaged_image_is_refused_before_anything_is_forked(good, tmp_path, capsys, kind, how):
    good_dir, pids = good
    images = _copy(good_dir, tmp_path)
    name = _files_of(images, kind)[-1]
    damage(images / name, how)
    res = harness.run_crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log", timeout=120)
    _assert_refused_before_fork(res, images, pids, name, forked_ok=kind == "pages")
    check = harness.run_crpy("check-images", "-D", images)
    lines = check.stderr.strip().splitlines()
    assert check.returncode == 1 and len(lines) == 1 and name in lines[0], check.stderr
    assert "Traceback" not in check.stderr
    _assert_show_is_json_or_one_line(images / name, capsys)


def _assert_show_is_json_or_one_line(path, capsys):
    """`crpy show` of the damaged image: its JSON if it still decodes, else one line with the offset."""
    from crpy import cli

    capsys.readouterr()
    rc = cli.main(["show", str(path)])
    out, err = capsys.readouterr()
    if rc == 0:
        json.loads(out)
        return
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and str(path) in lines[0] and "at offset " in lines[0], err


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_digests_file_is_refused(good, tmp_path, how):
    good_dir, pids = good
    images = _copy(good_dir, tmp_path)
    damage(images / digest.FILE_NAME, how)
    res = harness.run_crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log", timeout=120)
    _assert_refused_before_fork(res, images, pids, digest.FILE_NAME)
    assert "digests file itself is damaged" in res.stderr


def test_an_added_image_is_refused(good, tmp_path):
    good_dir, pids = good
    images = _copy(good_dir, tmp_path)
    shutil.copy(images / "pstree.img", images / "tty-info.img")
    res = harness.run_crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log", timeout=120)
    _assert_refused_before_fork(res, images, pids, "tty-info.img")


def test_missing_digests_are_refused_unless_skipped(dump_test):
    """No crpy-digests (criu's images, or a lost file): refused with a hint naming --skip-integrity;
    with it, the dump restores and the test passes its own check."""
    test, images = dump_test(TEST)
    images = pathlib.Path(images)
    (images / digest.FILE_NAME).unlink()
    procs.reap_strays()
    res = harness.run_crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log", timeout=120)
    _assert_refused_before_fork(res, images, test.tree or [test.pid], digest.FILE_NAME)
    _restore_and_check(test, images, "--skip-integrity")


def test_an_intact_dump_restores(dump_test):
    test, images = dump_test(TEST)
    procs.reap_strays()
    _restore_and_check(test, pathlib.Path(images))
    assert "images intact" in (pathlib.Path(images) / "restore.log").read_text()


def _restore_and_check(test, images, *extra):
    """Restore (its pids are free), then SIGTERM: the test checks its own state and says PASS."""
    pids = test.tree or [test.pid]
    try:
        harness.restore(str(images), pids[0], extra=extra)
        passed, reason = test.stop()
        assert passed, reason
    finally:
        procs.kill_alive(pids)
