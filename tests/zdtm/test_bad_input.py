"""Bad input to the crpy CLI (issue 2, point 10): one clear line, non-zero exit, no traceback, nothing left.

Restore: a missing directory, an empty one, and copies of a real dump (of the busyloop zdtm test)
with one defect each: a truncated pages image, a wrong magic in inventory.img and in core-PID.img,
a pagemap that points past the end of the pages, an absurd entry size, a missing pstree.img.
Afterwards the pid of the image must not be alive and no child of ours may be left.
Dump: a pid that does not exist, crpy's own pid, crpy's parent, and a kernel thread.
"""

import glob
import os
import shutil
import struct
import subprocess

import pytest

from tests.zdtm import harness, procs


pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture(scope="module")
def good_images(tmp_path_factory):
    """(images dir, pid) of a real dump of the busyloop test."""
    work = tmp_path_factory.mktemp("victim")
    images = tmp_path_factory.mktemp("images")
    test = harness.ZdtmTest("busyloop", str(work))
    pid = test.start()
    try:
        harness.dump(pid, str(images))
    except harness.HarnessError as e:
        test.kill()
        pytest.fail(f"cannot make the images the bad-input tests corrupt: {e}")
    return str(images), pid


def children():
    """Pids of our live children (finished ones reaped first)."""
    procs.reap_strays()
    return set(procs.children_of(os.getpid()))


def assert_clean_failure(proc, extra_children=()):
    assert proc.returncode not in (0, None), f"crpy succeeded: {proc.stdout}{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"want one line on stderr, got {lines}"
    assert lines[0].startswith("crpy"), lines


def run_restore(images_dir, pid, tmp_path):
    before = children()
    proc = harness.run_crpy("restore", "-D", images_dir, "-d", "--pidfile", tmp_path / "restored.pid",
                            timeout=120)
    left = children() - before
    alive = procs.proc_state(pid) not in (None, "Z", "X") if pid else False
    for p in left | ({pid} if alive else set()):
        procs.kill_and_reap(p)
    assert_clean_failure(proc)
    assert not alive, f"pid {pid} of the image is alive after a failed restore"
    assert not left, f"processes left behind: {sorted(left)}"
    return proc


def corrupted_copy(good_images, tmp_path):
    src, pid = good_images
    dst = tmp_path / "images"
    shutil.copytree(src, dst)
    for log in ("dump.log",):
        if (dst / log).exists():
            (dst / log).unlink()
    return dst, pid


def flip_u32(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        (value,) = struct.unpack("<I", f.read(4))
        f.seek(offset)
        f.write(struct.pack("<I", value ^ 0x01010101))


def test_restore_missing_dir(tmp_path):
    run_restore(str(tmp_path / "no-such-dir"), None, tmp_path)


def test_restore_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    run_restore(str(tmp_path / "empty"), None, tmp_path)


def test_restore_truncated_pages(good_images, tmp_path):
    images, pid = corrupted_copy(good_images, tmp_path)
    pages = glob.glob(str(images / "pages-*.img"))
    assert pages, "the dump wrote no pages-*.img"
    size = os.path.getsize(pages[0])
    assert size >= 8192, f"pages image too small to truncate meaningfully ({size} bytes)"
    os.truncate(pages[0], size - 4096 - 100)
    run_restore(str(images), pid, tmp_path)


def test_restore_inventory_wrong_magic(good_images, tmp_path):
    images, pid = corrupted_copy(good_images, tmp_path)
    flip_u32(images / "inventory.img", 0)     # inventory has no header magic: this is its type magic
    proc = run_restore(str(images), pid, tmp_path)
    assert "inventory" in proc.stderr, proc.stderr


def test_restore_core_wrong_magic(good_images, tmp_path):
    images, pid = corrupted_copy(good_images, tmp_path)
    flip_u32(images / f"core-{pid}.img", 4)   # after the common header magic
    proc = run_restore(str(images), pid, tmp_path)
    assert "core" in proc.stderr, proc.stderr


def test_restore_pagemap_past_end_of_pages(good_images, tmp_path):
    from crpy.images import framing

    images, pid = corrupted_copy(good_images, tmp_path)
    path = framing.image_path(images, "pagemap", pid)
    entries = framing.read_image(path, "pagemap")
    assert len(entries) >= 2, "the pagemap has no entries"
    last = entries[-1]
    entries[-1] = framing.new_pagemap_entry(last.vaddr, framing.pagemap_nr_pages(last) + 64, last.flags)
    framing.write_image(path, "pagemap", entries)
    run_restore(str(images), pid, tmp_path)


def test_restore_absurd_entry_size(good_images, tmp_path):
    images, pid = corrupted_copy(good_images, tmp_path)
    path = images / f"mm-{pid}.img"
    with open(path, "r+b") as f:
        f.seek(8)                              # header magic, type magic, then the entry size
        f.write(struct.pack("<I", 0xfffffff0))
    run_restore(str(images), pid, tmp_path)


def test_restore_missing_pstree(good_images, tmp_path):
    images, pid = corrupted_copy(good_images, tmp_path)
    (images / "pstree.img").unlink()
    run_restore(str(images), pid, tmp_path)


def run_dump_cmd(argv, tmp_path):
    before = children()
    proc = subprocess.run(argv, cwd=harness.REPO, env=harness.crpy_env(), capture_output=True, text=True,
                          timeout=120)
    left = children() - before
    for p in left:
        procs.kill_and_reap(p)
    assert not left, f"processes left behind: {sorted(left)}"
    return proc


def test_dump_missing_pid(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    proc = run_dump_cmd(harness.crpy_command("dump", "-t", gone.pid, "-D", tmp_path), tmp_path)
    assert_clean_failure(proc)


def test_dump_crpy_itself(tmp_path):
    """`exec` keeps the shell's pid, so $$ is the pid of crpy itself."""
    cmd = " ".join(harness.crpy_command("dump", "-t", "$$", "-D", str(tmp_path)))
    proc = run_dump_cmd(["sh", "-c", f"exec {cmd}"], tmp_path)
    assert_clean_failure(proc)


def test_dump_crpy_parent(tmp_path):
    """$$ is the shell that waits for crpy: dumping it would take crpy along."""
    cmd = " ".join(harness.crpy_command("dump", "-t", "$$", "-D", str(tmp_path)))
    proc = run_dump_cmd(["sh", "-c", f"{cmd}; rc=$?; echo shell-alive; exit $rc"], tmp_path)
    assert "shell-alive" in proc.stdout, "the shell (crpy's parent) did not survive"
    assert_clean_failure(proc)


def test_dump_kernel_thread(tmp_path):
    with open("/proc/2/comm") as f:
        assert f.read().strip() == "kthreadd", "pid 2 is not kthreadd on this machine"
    proc = run_dump_cmd(harness.crpy_command("dump", "-t", 2, "-D", tmp_path), tmp_path)
    assert_clean_failure(proc)
