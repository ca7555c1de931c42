"""The images CRIU 4.2 wrote (tests/fixtures/criu-4.2) carry no crpy-digests: `crpy check-images`
says so in one line naming --skip-integrity, `crpy show` decodes them all the same, and with
--skip-integrity `crpy restore` takes them (the restore itself needs the fixture programs at
/opt/crpy-fixtures (mounted there in a mount namespace of the restore's own), their pids free, AVX-512 state and rlimits this machine can set: the test skips
naming whichever is missing)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.unit.crhelpers import CRIU_FIXTURES, ROOT, build_c, crpy, kill_quietly

NAMES = ("counter", "tree")


@pytest.mark.parametrize("name", NAMES)
def test_check_images_says_criu_images_have_no_digests(name):
    res = crpy("check-images", "-D", CRIU_FIXTURES / f"{name}-images")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert "crpy-digests" in lines[0] and "no digests" in lines[0] and "--skip-integrity" in lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_show_decodes_criu_images_without_digests(name):
    res = subprocess.run([sys.executable, "-m", "crpy", "show", str(CRIU_FIXTURES / f"{name}-images")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    doc = json.loads(res.stdout)
    assert any(p.endswith("pstree.img") for p in doc) and not any("crpy-digests" in p for p in doc)


def _cpu_has_avx512():
    with open("/proc/cpuinfo") as f:
        return " avx512f" in f.read()


def _fixture_root(name, tmp_path):
    """A directory holding NAME built from the source beside the images, to be mounted on
    /opt/crpy-fixtures (the path CRIU's images record) in a mount namespace of the restore's own:
    nothing is installed on the machine."""
    root = tmp_path / "opt-crpy-fixtures"
    root.mkdir()
    shutil.copy(build_c(tmp_path, name, CRIU_FIXTURES / f"{name}.c"), root / name)
    return root


def _restore_with_fixtures(root, *args):
    """`crpy restore ARGS` in a private mount namespace where a tmpfs on /opt carries
    crpy-fixtures/ from root (the restored task keeps that namespace)."""
    script = ('mount -t tmpfs crpy-fixtures /opt && mkdir /opt/crpy-fixtures && '
              'mount --bind "$0" /opt/crpy-fixtures && exec "$@"')
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root),
           sys.executable, "-m", "crpy", "restore", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_counter_restores_with_the_check_skipped(tmp_path):
    if not _cpu_has_avx512():
        pytest.skip("this CPU lacks AVX-512 (avx512f), whose state the CRIU 4.2 images hold: "
                    "their restore is refused for that; decoding is tested above")
    images = tmp_path / "images"
    shutil.copytree(CRIU_FIXTURES / "counter-images", images)
    root = _fixture_root("counter", tmp_path)
    res = _restore_with_fixtures(root, "-D", images, "-d", "-v4", "-o", "restore.log")
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr   # without the skip: refused
    res = _restore_with_fixtures(root, "-D", images, "-d", "--skip-integrity", "-v4", "-o", "restore.log")
    pid = 8802
    try:
        if res.returncode and ("above what crpy can set" in res.stderr or " is taken" in res.stderr):
            pytest.skip(f"the CRIU 4.2 counter images cannot be restored on this machine: "
                        f"{res.stderr.strip()}")
        assert res.returncode == 0, res.stderr
        assert os.readlink(f"/proc/{pid}/exe") == "/opt/crpy-fixtures/counter"
        assert "image integrity not checked (--skip-integrity)" in (images / "restore.log").read_text()
    finally:
        if res.returncode == 0:
            kill_quietly(pid)
