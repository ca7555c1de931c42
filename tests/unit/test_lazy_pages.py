"""crpy lazy-pages (crpy.lazy): the uffd message parser, the daemon's bookkeeping of the events a
task's own mm changes send (no kernel needed), and end to end: the daemon SIGKILLed while most
pages are still away kills the restored task with one line, rather than let it read zeros or hang.
(The page-correct lazy restore itself is the zdtm test lazy_mem, and any test with run --lazy.)"""

import os
import signal
import struct

import pytest

from crpy.kernel import uffd
from crpy.lazy.daemon import Daemon
from crpy.lazy.mm import MM, PAGE
from tests.unit.crhelpers import ROOT, crpy, gone, kill_quietly, log_tail, read_text, wait_for


def _msg(event, a=0, b=0, c=0):
    return struct.pack("<BBHI", event, 0, 0, 0) + struct.pack("<QQQ", a, b, c)


def test_parse_messages():
    data = (_msg(uffd.UFFD_EVENT_PAGEFAULT, 1, 0x7000_1234, 42) + _msg(uffd.UFFD_EVENT_FORK, 0x1_0000_0009) +
            _msg(uffd.UFFD_EVENT_REMAP, 0x1000, 0x9000, 0x2000))
    assert uffd.parse_messages(data) == [(uffd.UFFD_EVENT_PAGEFAULT, 1, 0x7000_1234, 42),
                                         (uffd.UFFD_EVENT_FORK, 9, 0, 0),
                                         (uffd.UFFD_EVENT_REMAP, 0x1000, 0x9000, 0x2000)]


class _Guard:
    def __init__(self):
        self.held, self.released = [], []

    def hold(self, key, pid, fd):
        self.held.append((key, pid, fd))

    def release(self, key):
        self.released.append(key)


def _daemon(pages, wipe=False):
    """A daemon serving one MM whose pending pages are at `pages` (fd: a real, closable fd)."""
    d = Daemon(source=None, guard=_Guard())
    mm = MM(1, 100, os.open("/dev/null", os.O_RDONLY),
            {a: ("pages-1.img", i * PAGE, wipe) for i, a in enumerate(pages)})
    d.mms[mm.fd] = mm
    return d, mm


def test_remap_moves_pending_pages_with_their_image_offsets():
    d, mm = _daemon([0x10000, 0x11000, 0x20000])
    d._event(mm, uffd.UFFD_EVENT_REMAP, 0x10000, 0x7f0000000000, 0x2000)
    assert mm.pending == {0x7f0000000000: ("pages-1.img", 0, False),
                          0x7f0000001000: ("pages-1.img", PAGE, False),
                          0x20000: ("pages-1.img", 2 * PAGE, False)}
    mm.refresh()
    assert mm.order == sorted(mm.pending)


def test_unmap_and_remove_drop_pages_and_the_last_closes_the_mm():
    d, mm = _daemon([0x10000, 0x11000, 0x20000])
    d._event(mm, uffd.UFFD_EVENT_REMOVE, 0x11000, 0x12000, 0)      # madvise(DONTNEED): zeros there now
    assert sorted(mm.pending) == [0x10000, 0x20000]
    d._event(mm, uffd.UFFD_EVENT_UNMAP, 0x0, 0x30000, 0)
    assert not d.mms and d.guard.released == [1]


def test_fork_gives_the_child_the_pending_pages_except_wipe_on_fork():
    d, mm = _daemon([0x10000, 0x11000])
    child_fd = os.open("/dev/null", os.O_RDONLY)
    d._event(mm, uffd.UFFD_EVENT_FORK, child_fd, 0, 0)
    child = d.mms[child_fd]
    assert child.pending == mm.pending and child.pending is not mm.pending
    assert d.guard.held[-1][2] == child_fd
    d2, mm2 = _daemon([0x10000], wipe=True)
    fd2 = os.open("/dev/null", os.O_RDONLY)
    d2._event(mm2, uffd.UFFD_EVENT_FORK, fd2, 0, 0)
    assert fd2 not in d2.mms                  # nothing to serve: closed at once
    for x in (d, d2):
        for m in list(x.mms.values()):
            os.close(m.fd)


@pytest.fixture
def lazy_mem(tmp_path):
    from tests.zdtm import build

    return build.build(["lazy_mem"])[0]


def test_daemon_killed_mid_way_kills_the_task_with_one_line(tmp_path, lazy_mem):
    """(And before it: a restore --lazy-pages with no daemon listening is refused in one line.)"""
    import subprocess

    from tests.zdtm import lazy

    pidfile, outfile, images = tmp_path / "pid", tmp_path / "out", tmp_path / "img"
    images.mkdir()
    subprocess.run([lazy_mem, f"--pidfile={pidfile}", f"--outfile={outfile}"], cwd=tmp_path, check=True,
                   timeout=60)
    pid = int(pidfile.read_text())
    daemon = None
    try:
        r = crpy("dump", "-t", pid, "-D", images, "-v4", "-o", "dump.log")
        assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
        wait_for(lambda: gone(pid), what="the dumped task gone")
        r = crpy("restore", "-D", images, "-d", "--lazy-pages")           # no daemon yet: refused
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "cannot reach the lazy-pages daemon" in r.stderr and "crpy lazy-pages -D" in r.stderr, r.stderr
        assert gone(pid)
        daemon = lazy.start_daemon(str(images), push_delay_ms=1000)    # most pages stay away
        r = crpy("restore", "-D", images, "-d", "--lazy-pages", "-v4", "-o", "restore.log", timeout=60)
        assert r.returncode == 0, r.stderr + log_tail(images / "restore.log")
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        os.kill(pid, signal.SIGTERM)        # it now reads its pages: none may come back as zeros
        wait_for(lambda: gone(pid) or read_text(f"/proc/{pid}/stat").split(") ")[-1][:1] == "Z",
                 timeout=30, what="the restored task killed")
        # the guard says so after the kill (its line names the pids it killed): wait for the line
        said = wait_for(lambda: [ln for ln in read_text(images / "lazy-pages.out").splitlines() if "killed" in ln],
                        timeout=10, what="the guard's line in lazy-pages.out")
        assert len(said) == 1 and str(pid) in said[0] and "died" in said[0], said
        assert "PASS" not in read_text(outfile) and "FAIL" not in read_text(outfile), read_text(outfile)
    finally:
        lazy.stop_daemon(daemon)
        kill_quietly(pid)


def test_the_restorer_moving_an_area_into_place_makes_its_pages_pushable():
    d = Daemon(source=None, guard=_Guard())
    pages = [0x7f0000000000, 0x7f0000002000]
    mm = MM(1, 100, -1, unplaced={0x100000: (0x7f0000000000, 0x3000)},
            areas=[[0x100000, 0x7f0000000000, 0x3000, False, [[0, PAGE, "pages-1.img", 0],
                                                               [2 * PAGE, PAGE, "pages-1.img", PAGE]]]])
    assert not mm.pending and not mm.ready          # expanded when first needed, not on arrival
    mm.refresh()
    assert mm.order == [] and mm.slot_page(0x102000) == 0x7f0000002000
    d._event(mm, uffd.UFFD_EVENT_REMAP, 0x100000, 0x7f0000000000, 0x3000)
    mm.refresh()
    assert mm.order == pages and not mm.unplaced and mm.slot_page(0x102000) is None
    assert mm.pending[pages[1]] == ("pages-1.img", PAGE, False)


def _dump_and_serve(tmp_path, lazy_mem):
    """lazy_mem dumped into src/ (the source host's images, served by `crpy page-server
    --lazy-pages`) and copied to dst/ without its pages images' bytes of lazy areas mattering:
    (pid, outfile, dst, server)."""
    import shutil
    import subprocess

    from tests.zdtm.netpeers import Server

    pidfile, outfile, src, dst = tmp_path / "pid", tmp_path / "out", tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    subprocess.run([lazy_mem, f"--pidfile={pidfile}", f"--outfile={outfile}"], cwd=tmp_path, check=True,
                   timeout=60)
    pid = int(pidfile.read_text())
    r = crpy("dump", "-t", pid, "-D", src, "-v4", "-o", "dump.log")
    assert r.returncode == 0, r.stderr + log_tail(src / "dump.log")
    wait_for(lambda: gone(pid), what="the dumped task gone")
    shutil.copytree(src, dst)          # the other images, as migrate sends them
    server = Server("page-server", "--lazy-pages", "-D", str(src), "--port", "0", "--address", "127.0.0.1",
                    "-v4", "-o", "page-server.log")
    return pid, outfile, dst, server


def test_lazy_pages_fetches_from_a_page_server(tmp_path, lazy_mem):
    from tests.zdtm import lazy

    pid, outfile, dst, server = _dump_and_serve(tmp_path, lazy_mem)
    daemon = None
    try:
        daemon = lazy.start_daemon(str(dst), page_server=server.port)
        r = crpy("restore", "-D", dst, "-d", "--lazy-pages", "-v4", "-o", "restore.log", timeout=60)
        assert r.returncode == 0, r.stderr + log_tail(dst / "restore.log")
        lazy.wait_daemon(daemon, str(dst))
        rc, err = server.wait()        # told DONE by the daemon: every page is in
        assert rc == 0, err
        served = [ln for ln in read_text(tmp_path / "src" / "page-server.log").splitlines() if "every page served" in ln]
        assert served and int(served[0].split("(")[-1].split()[0]) >= 64 * PAGE, served
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: "PASS" in read_text(outfile) or "FAIL" in read_text(outfile), timeout=30,
                 what="the restored task's verdict")
        assert "PASS" in read_text(outfile), read_text(outfile)
    finally:
        lazy.stop_daemon(daemon)
        server.kill()
        kill_quietly(pid)


def test_page_server_killed_mid_transfer_kills_the_task_with_one_line(tmp_path, lazy_mem):
    from tests.zdtm import lazy

    pid, outfile, dst, server = _dump_and_serve(tmp_path, lazy_mem)
    daemon = None
    try:
        daemon = lazy.start_daemon(str(dst), push_delay_ms=1000, page_server=server.port)  # pages stay away
        r = crpy("restore", "-D", dst, "-d", "--lazy-pages", "-v4", "-o", "restore.log", timeout=60)
        assert r.returncode == 0, r.stderr + log_tail(dst / "restore.log")
        server.kill()                  # the source host goes away
        os.kill(pid, signal.SIGTERM)   # the task now touches its memory: its faults need the server
        wait_for(lambda: gone(pid) or read_text(f"/proc/{pid}/stat").split(") ")[-1][:1] == "Z",
                 timeout=60, what="the restored task killed")
        assert daemon.wait(30) == 1
        said = [ln for ln in read_text(dst / "lazy-pages.out").splitlines() if "killed" in ln]
        assert len(said) == 1 and str(pid) in said[0] and "127.0.0.1:" in said[0], said
        assert "PASS" not in read_text(outfile) and "FAIL" not in read_text(outfile), read_text(outfile)
    finally:
        lazy.stop_daemon(daemon)
        server.kill()
        kill_quietly(pid)


def test_a_page_source_that_fails_kills_the_waiting_tasks():
    """SourceGone (pages image unreadable, later a page server gone) in the daemon itself: every
    task still waiting for pages is SIGKILLed and the daemon closes what it held."""
    import subprocess

    waiting = subprocess.Popen(["sleep", "60"])
    try:
        d, mm = _daemon([0x10000])
        mm.pid = waiting.pid
        d.fail("page server gone")
        assert waiting.wait(10) == -signal.SIGKILL
        assert not d.mms and d.guard.released == [1]
    finally:
        kill_quietly(waiting.pid)
