"""The final dump of `crpy migrate --lazy` (DumpOptions.lazy_pages, crpy.dump.held_pages): the
pages stay in page pipes past the freeze and the kill, the pages image is an empty file of its
size until they are drained (a part on demand, out of order, then the rest), and the drained
directory restores a target (predump_target.c) that checks every page of its memory."""

import os
import signal

import pytest

from tests.unit.crhelpers import SelfCheckingTarget, build_c, read_text, wait_for
from tests.unit.test_predump import HERE


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("held"), "predump_target", HERE / "predump_target.c")


def _dump_held(t, images):
    from crpy.dump import held_pages
    from crpy.dump.pipeline import run_dump
    from crpy.options import DumpOptions

    for n in (1, 2):                       # memory written, mapped, moved and grown
        os.kill(t.pid, signal.SIGUSR1)
        wait_for(lambda: f"step {n}\n" in read_text(t.out), what=f"step {n}")
    stats = run_dump(DumpOptions(pid=t.pid, images_dir=str(images), verbosity=4, log_file="dump.log",
                                 lazy_pages=True))
    t.proc.wait(timeout=10)                # killed by the dump: the pipes hold its pages now
    held = held_pages.claim(str(images))
    assert held is not None and held_pages.claim(str(images)) is None
    return stats, held


def test_held_pages_drain_on_demand_then_restore(target_bin, tmp_path, monkeypatch):
    from crpy.dump import parasite
    from crpy.images.digest import write_digests

    monkeypatch.setattr(parasite, "pipe_size_limit", lambda: 64 << 10)   # many pipes: a GET drains one
    images = tmp_path / "img"
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        stats, held = _dump_held(t, images)
        try:
            path = images / "pages-1.img"
            size = path.stat().st_size
            assert size == stats["pages_bytes"] > 256 << 10
            # nothing copied while frozen: only the few bytes of the parasite's frame put back
            assert path.stat().st_blocks * 512 <= 16 << 10, path.stat()
            assert not (images / "crpy-digests").exists()
            held.ensure(str(path), 0, 4096)                    # a pipe drained only as far as asked
            assert held.drained == 4096
            held.ensure(str(path), size - 4096, 4096)          # then the last page
            with open(path, "rb") as f:
                f.seek(size - 4096)
                assert f.read(4096) != bytes(4096)
            assert held.drained < size
            held.drain_all()
            assert path.stat().st_blocks * 512 >= size
            with open(path, "rb") as f:
                assert f.read(4096) != bytes(4096)
        finally:
            held.close()
        write_digests(str(images))
        t.restore(images)
        t.verdict(main_sleeps_in=None)


def test_held_pages_dropped_when_the_dump_fails(target_bin, tmp_path, monkeypatch):
    """A dump --lazy-pages that fails after the pages were held leaves the task running as it
    was and nothing held."""
    from crpy.dump import held_pages
    from crpy.dump.pipeline import run_dump
    from crpy.errors import CrpyError
    from crpy.options import DumpOptions

    images = tmp_path / "img"
    monkeypatch.setenv("CRPY_FAULT", "after-tree-images")
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        with pytest.raises(CrpyError):
            run_dump(DumpOptions(pid=t.pid, images_dir=str(images), verbosity=4, log_file="dump.log",
                                 lazy_pages=True))
        assert held_pages.claim(str(images)) is None
        assert os.path.exists(f"/proc/{t.pid}") and t.proc.poll() is None
        t.verdict(main_sleeps_in=None)
