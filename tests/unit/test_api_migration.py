"""The Python API for migration tools (crpy.api): PreDump rounds through PageServer objects, and
a Migration to a receiving PageServer with its per-round statistics and callback; the target
(predump_target.c) changes its memory between rounds and checks every page after the restore."""

import os
import signal

import pytest

from crpy import api
from tests.unit.crhelpers import SelfCheckingTarget, build_c, read_text, wait_for
from tests.unit.test_predump import HERE, _wp_async_available


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory):
    if not _wp_async_available():
        pytest.skip("userfaultfd WP_ASYNC (Linux 6.7+) is not available: no pre-dump tracking")
    return build_c(tmp_path_factory.mktemp("apimig"), "predump_target", HERE / "predump_target.c")


def _step(t, n):
    os.kill(t.pid, signal.SIGUSR1)
    wait_for(lambda: f"step {n}\n" in read_text(t.out), what=f"step {n}")


def test_pre_dump_rounds_through_page_servers(target_bin, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        rounds = api.PreDump(t.pid, str(src), page_server=True, address="127.0.0.1")
        for n in (1, 2):
            _step(t, n)
            server = api.PageServer(str(dst / f"pre{n}")).start()
            rounds.round(port=server.port)
            server.wait(60)
        assert len(rounds.rounds) == 2 and rounds.rounds[1]["pages"] < rounds.rounds[0]["pages"]
        _step(t, 3)
        server = api.PageServer(str(dst / "dump")).start()
        rounds.dump(port=server.port)
        server.wait(60)
        t.proc.wait(timeout=10)
        assert not (src / "dump" / "pages-1.img").exists() and (dst / "dump" / "pages-1.img").exists()
        t.restore(dst / "dump")
        t.verdict(main_sleeps_in=None)


def test_migration_object_reports_each_round(target_bin, tmp_path):
    with SelfCheckingTarget(target_bin, tmp_path) as t:
        _step(t, 1)
        receiver = api.PageServer(str(tmp_path / "dst"), receive=True).start()
        seen = []

        def on_round(r):
            seen.append(r)
            if r.kind == "dump":          # the final dump killed the source: reap it, free its pid
                t.proc.wait(timeout=10)

        result = api.Migration(t.pid, "127.0.0.1", receiver.port, str(tmp_path / "src"), max_rounds=2,
                               min_rounds=2, on_round=on_round).run()
        receiver.wait(60)
        assert [r.kind for r in seen] == ["pre-dump", "pre-dump", "dump"]
        assert result.rounds == seen and result.pid == t.pid and result.frozen_seconds > 0
        assert seen[0].pages > seen[1].pages and seen[0].bytes_sent > seen[1].bytes_sent > 0
        assert all(r.seconds > 0 for r in seen) and seen[1].dirty_rate >= 0
        t.verdict(main_sleeps_in=None)
