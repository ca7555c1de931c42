"""crpy.progress: the line's figures, nothing unless stderr is a terminal, and a real 1 GiB dump
and its restore drawing progress on a pty (python's pty.openpty as crpy's stderr) but not on a
pipe, with -v log lines kept whole."""

import io
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crhelpers import ROOT, build_c, gone, kill_quietly, read_text, start_target, wait_for

from crpy import progress
from crpy.log import log

MIB = 1 << 20


def test_line_figures_and_time_left():
    p = progress.Progress(io.StringIO(), "dump", 4, total_bytes=1024 * MIB)
    p.t0 -= 2.0                                # 2 s in
    p.done_tasks, p.done_bytes = 1, 256 * MIB
    text = p.line()
    assert text.startswith("crpy dump: 1/4 tasks, 256/1024 MiB, ")
    assert " MiB/s, " in text and text.endswith(" left")
    # 768 MiB at 128 MiB/s: 6 s; 3 tasks at 2 s each: 6 s as well
    assert p.time_left(2.0, 128 * MIB) == pytest.approx(6.0)
    p.done_tasks = 2
    assert p.time_left(2.0, 256 * MIB) == pytest.approx(3.0)   # the bytes say more than the tasks
    assert progress._clock(None) == "?:??" and progress._clock(75) == "1:15"
    assert progress._clock(3725) == "1:02:05"


def test_poll_gives_the_bytes():
    p = progress.Progress(io.StringIO(), "restore", 1, total_bytes=10 * MIB, poll=lambda: 5 * MIB)
    assert "5/10 MiB" in p.line()


def test_nothing_unless_enabled_on_a_terminal():
    r, w = os.pipe()
    try:
        with os.fdopen(w, "w") as pipe_end:
            progress.enable(pipe_end)
            progress.start("dump", 1)
            assert progress._current is None       # not a terminal: no thread, nothing drawn
            progress.bytes_done(MIB)
            progress.finish()
    finally:
        os.close(r)
        progress.disable()


def test_a_log_line_erases_the_progress_line():
    out = io.StringIO()
    p = progress.Progress(out, "dump", 1)
    p.redraw()
    assert out.getvalue().startswith("\rcrpy dump: 0/1 tasks")
    saved = log.stream, log.status, log.level
    log.stream, log.status, log.level = out, p, 20
    try:
        log.info("a line")
    finally:
        log.stream, log.status, log.level = saved
    tail = out.getvalue().split("\x1b[K", 1)[1]
    assert tail.startswith("\r\x1b[K(") and tail.endswith("I: a line\n")


# ------------------------------------------------------------ a real dump and restore of 1 GiB

def _run_on(stderr_kind, args, env):
    """Run `python3 -m crpy ARGS` with stderr on a new pty or a pipe; (exit code, stderr text)."""
    cmd = [sys.executable, "-m", "crpy", *map(str, args)]
    if stderr_kind == "pipe":
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        return r.returncode, r.stderr
    master, slave = pty.openpty()
    chunks = []

    def drain():                               # a full pty would block crpy's writes
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:                    # EIO: the slave side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave, timeout=300, env=env)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return p.returncode, b"".join(chunks).decode(errors="replace")


def _visible_lines(text):
    """The lines a terminal shows at the end: in each line, what the last carriage return left
    (a progress line is "\\rTEXT\\x1b[K"; a log line erases it with "\\r\\x1b[K" first)."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        pieces = [p for p in line.split("\r") if p]
        if pieces:
            out.append(pieces[-1].replace("\x1b[K", ""))
    return out


@pytest.fixture
def held_gib(tmp_path):
    exe = build_c(tmp_path, "hold", Path(ROOT) / "bench" / "hold.c")
    pidfile = tmp_path / "hold.pid"
    # hold.c makes its own session: not started in a new one
    p = start_target([exe, 1024, pidfile], lambda: read_text(pidfile).endswith("\n"),
                     "the 1 GiB holder", timeout=120, start_new_session=False)
    yield p
    kill_quietly(p.pid)
    p.wait()


@pytest.mark.parametrize("stderr_kind", ["pty", "pipe"])
def test_progress_of_a_1gib_dump_and_restore(held_gib, tmp_path, stderr_kind):
    images = Path("/dev/shm") / f"crpy-test-progress-{os.getpid()}-{stderr_kind}"
    env = dict(os.environ, CRPY_PROGRESS_DELAY_S="0.1")   # shown even when the machine is fast
    pid = held_gib.pid
    try:
        code, err = _run_on(stderr_kind, ["dump", "-t", pid, "-D", images], env)
        assert code == 0, err
        held_gib.wait()
        wait_for(lambda: gone(pid), what="the dumped holder to go")
        if stderr_kind == "pipe":
            assert err == "", f"a pipe got progress or more: {err!r}"
        else:
            assert "\rcrpy dump: 0/1 tasks" in err or "\rcrpy dump: 1/1 tasks" in err, repr(err[-400:])
            assert "/1024 MiB, " in err and " MiB/s, " in err and " left\x1b[K" in err, repr(err[-400:])
            assert err.endswith("\r\x1b[K"), "the line is erased at the end"
        code, err = _run_on(stderr_kind, ["restore", "-d", "-v3", "-D", images], env)
        assert code == 0, err
        logged = [line for line in _visible_lines(err) if ") I: " in line]
        assert any("tasks under pid" in line for line in logged), err[-800:]
        for line in logged:                    # -v lines whole, never mixed with progress
            assert line.startswith("(") and "crpy restore:" not in line, repr(line)
        if stderr_kind == "pipe":
            assert "crpy restore:" not in err and "\r" not in err
        else:
            assert "\rcrpy restore: " in err and "/1024 MiB" in err, repr(err[-800:])
    finally:
        kill_quietly(pid)
        subprocess.run(["rm", "-rf", str(images)])
