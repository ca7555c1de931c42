"""`crpy migrate` to `crpy receive` running in a network namespace made by the test (a second
host on this machine, linked by a veth pair with addresses the test chooses, removed after).
zdtm tests migrate with 1 and 3 pre-copy rounds through the harness (`--migrate N`) and check
themselves on the destination.  Fault
injection: whatever fails before the destination has every image checked leaves the source
running untouched and untracked, and the destination empty; a restore failing on the destination
brings the tree back on the source, and still leaves the destination empty."""

import os

import pytest

from tests.zdtm import harness, procstate
from tests.zdtm.netpeers import NetNs, Relay, Server, listing, run_migrate, start_test, tracked
from tests.zdtm.cases import expect_detected, expect_pass, zdtm_tests

pytestmark = pytest.mark.usefixtures("subreaper")


@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    ns = NetNs()
    yield ns
    ns.close()



def _receive(netns, dst, env=None):
    dst.mkdir()
    return Server("receive", "--listen", "0", "--address", netns.there, "-D", str(dst), "-v4",
                  "-o", str(dst.parent / "receive.log"), prefix=netns.prefix(), env=env)


MIGRATE_TESTS = ["dirtymem", "mem256", "maps", "shmem", "threads_fpu"]


@pytest.mark.parametrize("rounds", [1, 3])
@zdtm_tests(MIGRATE_TESTS)
def test_zdtm_migrate(name, rounds):
    """`python3 -m tests.zdtm.run NAME --migrate N`: the harness's checks (same pid, every VMA
    as before, in the destination's namespace) and the test's own."""
    expect_pass(name, "--migrate", str(rounds))


def test_zdtm_migrate_tree_stop_and_copy():
    """tree5 (5 tasks, a socket pair, a file lock): no pre-copy rounds (pre-dump refuses its lock
    and its socket between tasks), the final dump and restore over the link."""
    expect_pass("tree5", "--migrate", "0")


def test_zdtm_migrate_catches_a_broken_state():
    expect_detected("dirtymem", "--migrate", "1")


@pytest.mark.parametrize("rounds", [1, 3])
def test_migrate_prints_its_rounds(tmp_path, netns, rounds):
    name = "dirtymem"
    test = start_test(tmp_path, name)
    try:
        vmas = {test.pid: procstate.vmas(test.pid)}
        server = _receive(netns, tmp_path / "dst")
        proc = run_migrate(test.pid, f"{netns.there}:{server.port}", str(tmp_path / "src"), rounds)
        rc, err = server.wait()
        assert proc.returncode == 0, proc.stderr + harness.tail(str(tmp_path / "receive.log"))
        assert rc == 0, err
        lines = proc.stdout.splitlines()
        assert [l.split(" (")[0] for l in lines if l.startswith("round ")] == \
            [f"round {n}" for n in range(1, rounds + 2)], proc.stdout
        assert f"restored as pid {test.pid}; frozen" in lines[-1], proc.stdout
        # it runs on the other side of the link now
        assert os.readlink(f"/proc/{test.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        # --restore-mode lazy (the default): restored from the destination's own images by a local
        # lazy-pages, which had every page in before DONE
        lazy_log = str(tmp_path / "dst" / "dump" / "lazy-pages.log")
        assert "all pages in" in harness.tail(lazy_log, 400), harness.tail(lazy_log)
        harness.check_vmas_back(vmas)
        assert test.stop() == (True, "PASS")
    finally:
        test.kill()


def test_migrate_restore_mode_eager(tmp_path, netns):
    """--restore-mode eager: the destination fills the memory before the tree runs (no lazy-pages)."""
    test = start_test(tmp_path, "dirtymem")
    try:
        vmas = {test.pid: procstate.vmas(test.pid)}
        server = _receive(netns, tmp_path / "dst")
        proc = run_migrate(test.pid, f"{netns.there}:{server.port}", str(tmp_path / "src"), 1,
                           extra=["--restore-mode", "eager"])
        rc, err = server.wait()
        assert proc.returncode == 0 and rc == 0, proc.stderr + err
        assert not (tmp_path / "dst" / "dump" / "lazy-pages.log").exists()
        assert "integrity-wait" in harness.tail(str(tmp_path / "dst" / "dump" / "restore.log"), 400)
        harness.check_vmas_back(vmas)
        assert test.stop() == (True, "PASS")
    finally:
        test.kill()


def _slow_lazy_migration(tmp_path, netns, test, *args):
    """(receiver, migrate process) of a migration of `test` whose destination pushes pages
    slowly (1 s between pushes), its output in migrate.out."""
    import subprocess

    server = _receive(netns, tmp_path / "dst", env={"CRPY_LAZY_PUSH_DELAY_MS": "1000"})
    out = open(tmp_path / "migrate.out", "w+")
    proc = subprocess.Popen(harness.crpy_command("migrate", "-t", test.pid, "--to", f"{netns.there}:{server.port}",
                                                 *args, "-D", tmp_path / "src", "-v4", "-o", "migrate.log"),
                            cwd=harness.REPO, env=harness.crpy_env(), stdout=out, stderr=subprocess.STDOUT)
    return server, proc


def test_destination_lazy_pages_dying_brings_the_tree_back(tmp_path, netns):
    """--restore-mode lazy: the destination's local lazy-pages killed while it still pushes pages
    (slowed down): its guard kills the restored task, the receiver refuses DONE, and the tree is
    restored on the source from its local images, where it passes its own check."""
    import signal
    import time

    test = start_test(tmp_path, "dirtymem")
    proc = None
    try:
        server, proc = _slow_lazy_migration(tmp_path, netns, test, "--max-rounds", "1")
        daemon, deadline = None, time.monotonic() + 120
        while daemon is None:
            harness._try_reap(test.pid)
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "migrate.out").read_text()
            daemon = _lazy_pages_daemon(server.proc.pid)
            time.sleep(0.01)
        while "Receive: restored" not in harness.tail(str(tmp_path / "receive.log"), 400):
            harness._try_reap(test.pid)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(daemon, signal.SIGKILL)
        while proc.poll() is None:           # the guard kills the restored task: reap it
            harness._try_reap(test.pid)
            assert time.monotonic() < deadline, (tmp_path / "migrate.out").read_text()
            time.sleep(0.005)
        said = (tmp_path / "migrate.out").read_text()
        assert proc.returncode == 1 and "the tree was restored here" in said and "lost its pages" in said, said
        rc, err = server.wait()
        assert rc == 1, err
        assert listing(tmp_path / "dst") == []
        assert os.readlink(f"/proc/{test.pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert test.stop() == (True, "PASS")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        test.kill()


def _lazy_pages_daemon(root):
    """The pid of the lazy-pages daemon forked by the receiver's restore worker (below root), or None."""
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            kids = [int(k) for t in os.listdir(f"/proc/{pid}/task")
                    for k in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            continue
        if b"crpy.migrate.restore_worker" in cmdline and kids:
            return kids[0]
        todo += kids
    return None


def _must_fail_untouched(tmp_path, netns, rounds, migrate_env=None, relay=None):
    """A migration that fails before the source is killed: one line, the source as it was and
    untracked, the destination's directory empty."""
    test = start_test(tmp_path, "dirtymem")
    try:
        before = procstate.snapshot(test.pid)
        server = _receive(netns, tmp_path / "dst")
        to = f"{netns.there}:{server.port}"
        if relay is not None:
            to = f"127.0.0.1:{Relay(server.port, host=netns.there, **relay).port}"
        proc = run_migrate(test.pid, to, str(tmp_path / "src"), rounds, env=migrate_env)
        rc, err = server.wait()
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert rc == 1, err
        assert listing(tmp_path / "dst") == []
        assert not tracked(test.pid)
        diffs = procstate.settled_differences(test.pid, before)   # detached, it runs back into its wait
        assert not diffs, diffs
        assert test.stop() == (True, "PASS")
        return lines[0]
    finally:
        test.kill()


@pytest.mark.parametrize("fault,rounds", [("after-images", 0), ("after-tree-images", 2), ("after-pages", 1)])
def test_migrate_fault_leaves_source_intact(tmp_path, netns, fault, rounds):
    """after-images with no pre-copy: the final dump fails after the destination checked every
    image; after-tree-images: in the final dump after 2 rounds; after-pages: in the first round."""
    line = _must_fail_untouched(tmp_path, netns, rounds, migrate_env={"CRPY_FAULT": fault})
    assert f"fault point {fault}" in line, line


def test_migrate_damaged_stream_leaves_source_intact(tmp_path, netns):
    line = _must_fail_untouched(tmp_path, netns, 1, relay={"flip_at": 4096})
    assert "damaged on the way" in line, line


def test_restore_failing_on_destination_brings_the_tree_back(tmp_path, netns):
    test = start_test(tmp_path, "dirtymem")
    try:
        server = _receive(netns, tmp_path / "dst", env={"CRPY_FAULT": "restore-after-load"})
        proc = run_migrate(test.pid, f"{netns.there}:{server.port}", str(tmp_path / "src"), 1)
        rc, err = server.wait()
        assert proc.returncode == 1, proc.stdout
        assert "the tree was restored here" in proc.stderr and "fault point restore-after-load" in proc.stderr
        assert rc == 1, err
        assert listing(tmp_path / "dst") == []
        # the tree is back here (same pid, this namespace) and passes its own check
        assert os.readlink(f"/proc/{test.pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert test.stop() == (True, "PASS")
    finally:
        test.kill()


# ---------------------------------------------------------------- --lazy (post-copy)

@pytest.mark.parametrize("rounds", [0, 1])
def test_zdtm_migrate_lazy(rounds):
    """`python3 -m tests.zdtm.run dirtymem --migrate N --lazy`: the harness's checks and the test's."""
    expect_pass("dirtymem", "--migrate", str(rounds), "--lazy")


def test_zdtm_migrate_lazy_catches_a_broken_state():
    expect_detected("dirtymem", "--migrate", "0", "--lazy")


@pytest.mark.parametrize("rounds", [0, 1])
@pytest.mark.parametrize("name", ["dirtymem", "mem256"])
def test_migrate_lazy(tmp_path, netns, name, rounds):
    """--lazy: the final dump's pages stay on the source and are fetched by the destination's
    lazy-pages daemon from the source's page server; migrate returns once all are there."""
    test = start_test(tmp_path, name)
    try:
        vmas = {test.pid: procstate.vmas(test.pid)}
        server = _receive(netns, tmp_path / "dst")
        proc = run_migrate(test.pid, f"{netns.there}:{server.port}", str(tmp_path / "src"), rounds,
                           extra=["--lazy"])
        rc, err = server.wait()
        assert proc.returncode == 0, proc.stderr + harness.tail(str(tmp_path / "receive.log"))
        assert rc == 0, err
        assert f"restored as pid {test.pid} there; frozen" in proc.stdout, proc.stdout
        assert f"restored as pid {test.pid}; frozen" in proc.stdout.splitlines()[-1], proc.stdout
        # the final dump's pages were not sent: the destination's are the sparse files it filled
        served = [l for l in harness.tail(str(tmp_path / "src" / "dump" / "migrate.log"), 400).splitlines()
                  if "served lazily" in l]
        assert served and int(served[0].split("Migration: ")[1].split()[0]) > 0, served
        assert os.readlink(f"/proc/{test.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        lazy_log = str(tmp_path / "dst" / "dump" / "lazy-pages.log")
        assert "all pages in" in harness.tail(lazy_log, 400), harness.tail(lazy_log)
        harness.check_vmas_back(vmas, "um")
        assert test.stop() == (True, "PASS")
    finally:
        test.kill()


def test_migrate_lazy_source_killed_mid_transfer_kills_the_destination_task(tmp_path, netns):
    """The source side killed while the destination still fetches pages (the daemon's background
    push slowed down): the restored task, which needs them, is killed, said in one line."""
    import signal
    import time

    test = start_test(tmp_path, "dirtymem")
    proc = None
    try:
        server, proc = _slow_lazy_migration(tmp_path, netns, test, "--max-rounds", "0", "--lazy")
        deadline = time.monotonic() + 120
        while "serving its pages" not in (tmp_path / "migrate.out").read_text():
            harness._try_reap(test.pid)
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "migrate.out").read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)      # the source host goes away, pages still there
        proc.wait(30)
        rc, err = server.wait()
        assert rc == 0, err                  # the restore itself was done and confirmed
        passed, why = test.stop()            # the task dies of SIGKILL rather than read zeros or hang
        assert not passed and "SIGKILL" in why, why
        # the daemon says it after the kill (the line names the pids killed): wait for its write
        out, said, deadline = tmp_path / "dst" / "dump" / "lazy-pages.out", [], time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            said = [l for l in out.read_text().splitlines() if l.strip()]
            time.sleep(0.01)
        assert len(said) == 1 and "killed the restored task" in said[0] and str(netns.here) in said[0], said
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        test.kill()
