"""zdtm tests through `crpy page-server`: the dump (and pre-dump rounds) send the page data over
TCP to a page server writing into another directory, the task is restored from that directory and
checks itself.  A stream damaged or cut on the way is refused by the server, which keeps nothing,
and the dump fails in one line with the task left as it was."""

import os
import subprocess

import pytest

from tests.zdtm import harness
from tests.zdtm.netpeers import Relay, Server, listing, page_server_args, start_test

pytestmark = pytest.mark.usefixtures("subreaper")



def _server(directory):
    directory.mkdir(parents=True, exist_ok=True)
    return Server("page-server", "-D", str(directory), "--port", "0", "--address", "127.0.0.1",
                  "-v4", "-o", "page-server.log")


def _dump_through(test, local, remote, extra=()):
    local.mkdir(parents=True, exist_ok=True)
    server = _server(remote)
    try:
        harness.dump(test.pid, str(local), extra=page_server_args(server.port) + list(extra))
    finally:
        rc, err = server.wait()
    assert rc == 0, err


def _pre_dump_through(test, local, remote, n):
    local.mkdir(parents=True)
    server = _server(remote)
    chain = ["--prev-images-dir", f"../pre{n - 1}", "--track-mem"] if n > 1 else []
    proc = harness.run_crpy("pre-dump", "-t", test.pid, "-D", str(local), "-v4", "-o", "pre-dump.log",
                            *chain, *page_server_args(server.port))
    rc, err = server.wait()
    assert proc.returncode == 0, proc.stderr + harness.tail(str(local / "pre-dump.log"))
    assert rc == 0, err


@pytest.mark.parametrize("name", ["dirtymem", "maps", "shmem", "threads_fpu"])
def test_dump_through_page_server(tmp_path, name):
    test = start_test(tmp_path, name)
    try:
        vmas = {test.pid: harness.procstate.vmas(test.pid)}
        _dump_through(test, tmp_path / "local", tmp_path / "remote")
        # the private page data went over the socket only; the server's directory is complete
        assert "pages-1.img" not in listing(tmp_path / "local")
        assert "pages-1.img" in listing(tmp_path / "remote")
        harness.restore(str(tmp_path / "remote"), test.pid)
        harness.check_vmas_back(vmas)
        assert test.stop() == (True, "PASS")
    finally:
        test.kill()


def test_page_server_restore_catches_a_broken_state(tmp_path):
    """--break: the restored task reports FAIL (its check can fail after this path too)."""
    test = start_test(tmp_path, "dirtymem", env={"ZDTM_BREAK": "1"})
    try:
        _dump_through(test, tmp_path / "local", tmp_path / "remote")
        harness.restore(str(tmp_path / "remote"), test.pid)
        passed, reason = test.stop()
        assert not passed and reason.startswith("FAIL"), reason
    finally:
        test.kill()


@pytest.mark.parametrize("rounds", [1, 3])
def test_pre_dump_rounds_through_page_server(tmp_path, rounds):
    test = start_test(tmp_path, "dirtymem")
    try:
        for n in range(1, rounds + 1):
            _pre_dump_through(test, tmp_path / "local" / f"pre{n}", tmp_path / "remote" / f"pre{n}", n)
        _dump_through(test, tmp_path / "local" / "dump", tmp_path / "remote" / "dump",
                      ["--prev-images-dir", f"../pre{rounds}", "--track-mem"])
        assert os.readlink(tmp_path / "remote" / "dump" / "parent") == f"../pre{rounds}"
        harness.restore(str(tmp_path / "remote" / "dump"), test.pid)
        assert test.stop() == (True, "PASS")
    finally:
        test.kill()


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_damaged_stream_refused(tmp_path, damage):
    """One byte of page data inverted on the way, or the stream cut in the middle of the page
    data: the server refuses and removes what it wrote; the dump fails in one line; the task runs
    on untouched."""
    test = start_test(tmp_path, "dirtymem")
    remote = tmp_path / "remote"
    server = _server(remote)
    try:
        relay = Relay(server.port, **({"flip_at": 4096} if damage == "flip" else {"cut_at": 8192}))
        (tmp_path / "local").mkdir()
        line = harness.dump_must_fail(test.pid, str(tmp_path / "local"), page_server_args(relay.port))
        rc, err = server.wait()
        assert rc == 1, err
        want = "damaged on the way" if damage == "flip" else "truncated"
        assert want in err, err
        if damage == "flip":          # the sender was told why
            assert "damaged on the way" in line and "pages-1.img" in line, line
        assert "page server" in line, line
        assert listing(remote) == ["page-server.log"]
        assert test.stop() == (True, "PASS")
    finally:
        server.kill()
        test.kill()


def test_page_server_daemon_and_status_fd(tmp_path):
    """criu's -d/--daemon and --status-fd: the command returns once the socket listens (one byte
    on the status fd first), the server goes on in the background and takes the dump."""
    test = start_test(tmp_path, "dirtymem")
    remote = tmp_path / "remote"
    remote.mkdir()
    r, w = os.pipe()
    try:
        proc = subprocess.run(harness.crpy_command("page-server", "-D", remote, "--port", "0", "--address",
                                                   "127.0.0.1", "-d", "--status-fd", w, "-o", "ps.log"),
                              cwd=harness.REPO, env=harness.crpy_env(), capture_output=True, text=True,
                              timeout=60, pass_fds=(w,))
        os.close(w)
        assert proc.returncode == 0, proc.stderr
        assert os.read(r, 1) == b"\0"
        port = int(proc.stdout.strip().rsplit(":", 1)[1])
        (tmp_path / "local").mkdir()
        harness.dump(test.pid, str(tmp_path / "local"), extra=page_server_args(port))
        harness.restore(str(remote), test.pid)
        assert test.stop() == (True, "PASS")
    finally:
        os.close(r)
        test.kill()
