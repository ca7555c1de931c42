"""The machine crpy runs on is sacred too (issue 13): images are private, a dump writes through no
planted link, and a restore gives no credentials or capabilities its caller lacks.

  modes      : a dump under umask 0 or 0277 into a directory that does not exist yet: the
               directories it makes are 0700, every file in them (images, log) 0600.
  planted    : a symlink (or a hard link) named like an image or the log, planted in the images
               directory and pointing at a file elsewhere: the dump fails in one line naming it,
               the file elsewhere is untouched, and so is the task.
  credentials: the images of a root task restored by uid 65534 (holding only
               CAP_DAC_READ_SEARCH, to read python and the images) or by root without
               CAP_SYS_ADMIN in its bounding set (so not in its permitted set): one line, nothing
               forked.
  unprivileged : uid 65534 with CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE dumps and restores its
               own task (one holding the same capabilities), which then passes its check.
"""

import os
import pathlib
import shutil
import stat
import subprocess

import pytest

from tests.zdtm import harness, procstate
from tests.zdtm import procs
from tests.zdtm.procs import proc_state
from tests.zdtm.test_sacred import assert_one_error_line, assert_untouched

VICTIM = "nanosleep"

pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture
def victim(tmp_path):
    test = harness.ZdtmTest(VICTIM, str(tmp_path))
    test.start()
    yield test
    test.kill()


def _crpy(args, preexec_fn=None, prefix=()):
    return subprocess.run(list(prefix) + harness.crpy_command(*args), cwd=harness.REPO, env=harness.crpy_env(),
                          capture_output=True, text=True, timeout=harness.CRPY_TIMEOUT, preexec_fn=preexec_fn)


@pytest.mark.parametrize("umask", [0, 0o277])
def test_images_are_private_whatever_the_umask(victim, tmp_path, umask):
    top = tmp_path / "made"
    images = top / "by" / "crpy"
    proc = _crpy(("dump", "-R", "-t", victim.pid, "-D", images, "-v4", "-o", "dump.log"),
                 preexec_fn=lambda: os.umask(umask))
    assert proc.returncode == 0, proc.stderr
    for d in (top, top / "by", images):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, f"{d}: {oct(os.stat(d).st_mode)}"
    names = os.listdir(images)
    assert "dump.log" in names and any(n.startswith("pages-") for n in names), names
    for name in names:
        mode = stat.S_IMODE(os.lstat(images / name).st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"


@pytest.mark.parametrize("name,how", [("core-{pid}.img", "symlink"), ("pages-1.img", "symlink"),
                                      ("pstree.img", "symlink"), ("dump.log", "symlink"),
                                      ("core-{pid}.img", "hardlink")])
def test_planted_link_fails_the_dump(victim, tmp_path, name, how):
    images = tmp_path / "images"
    images.mkdir()
    target = tmp_path / "precious"
    target.write_text("not an image\n")
    planted = images / name.format(pid=victim.pid)
    (os.symlink if how == "symlink" else os.link)(target, planted)
    before = procstate.snapshot(victim.pid)
    proc = _crpy(("dump", "-t", victim.pid, "-D", images, "-v4", "-o", "dump.log"))
    assert_one_error_line(proc.returncode, proc.stderr)
    assert str(planted) in proc.stderr and "refusing" in proc.stderr, proc.stderr
    assert target.read_text() == "not an image\n"
    assert os.path.islink(planted) == (how == "symlink")
    assert_untouched(victim, before)


@pytest.fixture
def root_task_images(victim, tmp_path):
    """The images of a root task with every capability, readable by all (the test is about
    credentials, not about reading them); the task is gone."""
    images = tmp_path / "images"
    images.mkdir()
    harness.dump(victim.pid, str(images))
    victim.pid, pid = None, victim.pid
    for root, dirs, files in os.walk(tmp_path):
        for n in dirs + files + ["."]:
            p = os.path.join(root, n)
            os.chmod(p, os.stat(p).st_mode | 0o044 | (0o011 if os.path.isdir(p) else 0))
    return pid, images


def _refused(pid, proc, words):
    assert_one_error_line(proc.returncode, proc.stderr)
    assert words in proc.stderr, proc.stderr
    assert proc_state(pid) is None, f"pid {pid} exists after a refused restore"


def test_restore_as_another_user_refuses_root_credentials(root_task_images):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    pid, images = root_task_images
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
              "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")
    proc = _crpy(("restore", "-D", images, "-d"), prefix=prefix)
    _refused(pid, proc, "ran as uid 0")


def test_restore_without_a_capability_refuses(root_task_images):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    pid, images = root_task_images
    proc = _crpy(("restore", "-D", images, "-d"), prefix=("setpriv", "--bounding-set=-sys_admin"))
    _refused(pid, proc, "capabilities crpy lacks")


UNPRIVILEGED = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps=+checkpoint_restore,+sys_ptrace,+dac_read_search",
                "--ambient-caps=+checkpoint_restore,+sys_ptrace,+dac_read_search")


@pytest.fixture
def open_dir():
    """A directory uid 65534 can use (pytest's tmp_path sits in a 0700 directory of root's)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="crpy-unpriv-")
    os.chmod(path, 0o777)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("task_caps", ["crpy's", "none"])
def test_unprivileged_user_dumps_and_restores_its_own_task(open_dir, task_caps):
    """Like criu --unprivileged: uid 65534 holding CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE (and
    CAP_DAC_READ_SEARCH, only to reach python and crpy on this machine) dumps and restores a
    task of its own, holding crpy's capabilities or none (the restorer then drops crpy's)."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    tmp_path = open_dir
    test = harness.ZdtmTest(VICTIM, str(tmp_path))
    exe = harness.build.build([VICTIM])[0]
    as_user = UNPRIVILEGED if task_caps != "none" else UNPRIVILEGED[:4]
    started = subprocess.run(list(as_user) + [exe, f"--pidfile={test.pidfile}", f"--outfile={test.outfile}"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=harness.START_TIMEOUT)
    assert started.returncode == 0, started.stderr
    with open(test.pidfile) as f:
        test.pid = int(f.read())
    try:
        caps_before = _caps(test.pid)
        assert os.stat(f"/proc/{test.pid}").st_uid == 65534
        assert (caps_before["CapEff"] == "0" * 16) == (task_caps == "none"), caps_before
        images = tmp_path / "images"
        proc = _crpy(("dump", "-t", test.pid, "-D", images, "-v4", "-o", "dump.log"), prefix=UNPRIVILEGED)
        assert proc.returncode == 0, proc.stderr
        procs.reap(test.pid, 10)
        assert proc_state(test.pid) is None
        proc = _crpy(("restore", "-D", images, "-d", "-v4", "-o", "restore.log"), prefix=UNPRIVILEGED)
        assert proc.returncode == 0, proc.stderr
        assert os.stat(f"/proc/{test.pid}").st_uid == 65534
        assert _caps(test.pid) == caps_before
        passed, reason = test.stop()
        assert passed, reason
    finally:
        test.kill()


def _caps(pid):
    with open(f"/proc/{pid}/status") as f:
        pairs = (l.partition(":") for l in f if l.startswith(("Cap", "Uid", "Gid", "Groups")))
        return {k: v.strip() for k, _, v in pairs}
