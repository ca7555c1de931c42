"""Open files of every kind crpy handles, round-tripped through `python3 -m crpy dump` / `restore`.

tests/unit/files_target.c sets the files up, waits for SIGUSR1 and then checks, in the restored
process, every fd: data in flight byte by byte, sizes, flags, offsets; it writes "ok" or the
first failure into its result file.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.crhelpers import ROOT, build_c, crpy, gone, kill_quietly, log_tail, start_target, wait_for

SRC = Path(__file__).with_name("files_target.c")


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("files_target"), "files_target", SRC, "-O2", "-Wall")


class FilesTarget:
    """files_target running MODE ARGS, ready (its files set up) when constructed; killed on leaving
    a `with FilesTarget(...)` (and by round_trip)."""

    def __init__(self, binary, tmp, *args):
        self.result = tmp / "result"
        self.images = tmp / "images"
        self.proc = start_target([binary, self.result, *args], Path(f"{self.result}.ready").exists,
                                 what="the target to set up its files")
        self.pid = self.proc.pid

    def dump(self, *extra):
        res = crpy("dump", "-t", str(self.pid), "-D", str(self.images), "-v4", "-o", "dump.log", *extra)
        assert res.returncode == 0, res.stderr + log_tail(self.images / "dump.log")
        if "-R" not in extra:
            self.proc.wait(timeout=10)              # the dump killed it: reap it, its pid is free again
        return res

    def restore(self):
        res = crpy("restore", "-D", str(self.images), "-d", "-v4", "-o", "restore.log")
        assert res.returncode == 0, res.stderr + log_tail(self.images / "restore.log")
        assert not gone(self.pid)

    def verdict(self):
        """Ask the restored task to check its files; its one-line verdict."""
        os.kill(self.pid, signal.SIGUSR1)
        wait_for(lambda: self.result.exists() or gone(self.pid), what="the target's verdict")
        return self.result.read_text().strip() if self.result.exists() else "target died"

    def round_trip(self, *dump_args):
        with self:
            self.dump(*dump_args)
            self.restore()
            return self.verdict()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill_quietly(self.pid)


@pytest.mark.parametrize("nbytes", [0, 1, 4096, 100_000, 1 << 20, 4 << 20])
def test_pipe_with_data_in_flight(target_bin, tmp_path, nbytes):
    assert FilesTarget(target_bin, tmp_path, "pipe", nbytes).round_trip() == "ok"


def test_pipe_data_is_not_consumed_by_the_dump(target_bin, tmp_path):
    with FilesTarget(target_bin, tmp_path, "pipe", 200_000) as t:
        t.dump("-R")                                   # --leave-running: the task goes on as it was
        assert t.verdict() == "ok"


def test_fifos_in_every_mode_with_data(target_bin, tmp_path):
    d = tmp_path / "fifos"
    d.mkdir()
    assert FilesTarget(target_bin, tmp_path, "fifo", d).round_trip() == "ok"


def test_unlinked_file_of_10_mib(target_bin, tmp_path):
    path = tmp_path / "unlinked"
    assert FilesTarget(target_bin, tmp_path, "ghost", path, 10 << 20).round_trip("--ghost-limit", "16M") == "ok"
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir() if "crpy-ghost" in p.name] == []


def test_unlinked_file_comes_back_when_its_name_is_taken(target_bin, tmp_path):
    path = tmp_path / "unlinked"
    with FilesTarget(target_bin, tmp_path, "ghost", path, 12345) as t:
        t.dump()
        path.write_text("a new file under the old name")
        t.restore()
        assert path.read_text() == "a new file under the old name"     # left alone by the restore
        path.unlink()                                  # (the target checks its name is free)
        assert t.verdict() == "ok"


def _probe_locks(d):
    """Which of the target's locks another process now finds taken."""
    import fcntl

    taken = set()
    with open(d / "flock", "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            taken.add("flock")
    with open(d / "posix", "r+") as f:
        for name, start, length in (("posix 10..19", 10, 10), ("posix 100..EOF", 200, 1)):
            try:
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
                fcntl.lockf(f, fcntl.LOCK_UN, length, start)
            except OSError:
                taken.add(name)
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 30)       # free range stays free
            fcntl.lockf(f, fcntl.LOCK_UN, 10, 30)
        except OSError:
            taken.add("posix 30..39")
    with open(d / "ofd", "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)            # flock ignores OFD locks,
            fcntl.flock(f, fcntl.LOCK_UN)
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)             # a POSIX lock does not
        except OSError:
            taken.add("ofd")
    return taken


ALL_LOCKS = {"flock", "posix 10..19", "posix 100..EOF", "ofd"}


def test_file_locks_are_held_again_after_restore(target_bin, tmp_path):
    d = tmp_path / "locks"
    d.mkdir()
    with FilesTarget(target_bin, tmp_path, "locks", d) as t:
        assert _probe_locks(d) == ALL_LOCKS
        t.dump("--file-locks")
        assert _probe_locks(d) == set()                # the dumped task is gone, so are its locks
        t.restore()
        assert _probe_locks(d) == ALL_LOCKS
        assert f" {t.pid} " in Path("/proc/locks").read_text()
        assert t.verdict() == "ok"


def test_held_lock_without_file_locks_is_one_line_and_task_untouched(target_bin, tmp_path):
    d = tmp_path / "locks"
    d.mkdir()
    with FilesTarget(target_bin, tmp_path, "locks", d) as t:
        res = crpy("dump", "-t", str(t.pid), "-D", str(tmp_path / "images"))
        assert res.returncode != 0
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and f"pid {t.pid} fd " in err[0] and "lock" in err[0] and "--file-locks" in err[0], err
        assert _probe_locks(d) == ALL_LOCKS
        assert t.verdict() == "ok"


@pytest.mark.parametrize("nbytes", [1, 300_000])
def test_pipe_and_file_shared_by_parent_and_child(target_bin, tmp_path, nbytes):
    """The parent writes into a pipe its child reads (data in flight across the dump), and both
    move one offset of a file opened before the fork."""
    assert FilesTarget(target_bin, tmp_path, "tree", nbytes, tmp_path / "shared").round_trip() == "ok"
    assert (tmp_path / "shared").read_bytes() == b"momkid"


def test_link_remap_keeps_an_unlinked_name_of_a_linked_file(target_bin, tmp_path):
    """--link-remap: a file unlinked under one name but linked under another comes back as the
    same inode (no copy); the temporary link is gone after the restore."""
    with FilesTarget(target_bin, tmp_path, "hardlink", tmp_path / "gone", tmp_path / "other") as t:
        t.dump("--link-remap")
        links = [p.name for p in tmp_path.iterdir() if "link-remap" in p.name]
        assert len(links) == 1 and not list(t.images.glob("ghost-file-*.img"))
        t.restore()
        assert [p.name for p in tmp_path.iterdir() if "link-remap" in p.name] == []
        assert t.verdict() == "ok"


def test_without_link_remap_a_linked_unlinked_file_is_copied(target_bin, tmp_path):
    with FilesTarget(target_bin, tmp_path, "hardlink", tmp_path / "gone", tmp_path / "other") as t:
        t.dump()
        assert len(list(t.images.glob("ghost-file-*.img"))) == 1
        t.restore()
        assert "no longer on" in t.verdict()           # a copy: the other name is another file now


# Runs argv as the foreground job of a new session on the terminal whose slave is argv[1] (what
# a shell does), then stays alive: the session must outlive the job and `crpy restore -d`.
SESSION = r"""
import fcntl, os, signal, sys, termios, time
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
for i in (0, 1, 2):
    os.dup2(fd, i)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)      # a background group taking the terminal
    os.tcsetpgrp(0, os.getpid())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execvp(sys.argv[2], sys.argv[2:])
with open(os.environ["JOB_PID_FILE"], "w") as f:
    f.write(str(pid))
os.waitpid(pid, 0)
while True:
    time.sleep(1)
"""


def _session(slave, argv, pid_file, cwd=None):
    env = dict(os.environ, JOB_PID_FILE=str(pid_file))
    p = subprocess.Popen([sys.executable, "-c", SESSION, slave, *argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the session's job")
    return p, int(pid_file.read_text())


def _tty_stat(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[4]), int(fields[5]), int(fields[2])       # tty_nr, tpgid, pgrp


def test_shell_job_comes_back_on_the_terminal_of_the_restore(target_bin, tmp_path):
    import pty
    import termios

    m1, s1 = pty.openpty()
    m2, s2 = pty.openpty()
    sessions = []
    try:
        attrs = termios.tcgetattr(s1)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(s1, termios.TCSANOW, attrs)
        result = tmp_path / "result"
        p, pid = _session(os.ttyname(s1), [target_bin, str(result), "tty"], tmp_path / "job1")
        sessions.append(p)
        wait_for(lambda: Path(f"{result}.ready").exists(), what="the job to be ready")
        images = tmp_path / "images"
        res = crpy("dump", "-t", str(pid), "-D", str(images))
        assert res.returncode != 0 and f"pid {pid} fd 0: unsupported tty" in res.stderr, res.stderr
        res = crpy("dump", "-j", "-t", str(pid), "-D", str(images), "-v4", "-o", "dump.log")
        assert res.returncode == 0, res.stderr + log_tail(images / "dump.log")
        wait_for(lambda: gone(pid), what="the dumped job to go")
        p2, crpy_pid = _session(os.ttyname(s2), [sys.executable, "-m", "crpy", "restore", "-j", "-d", "-D",
                                                 str(images), "-v4", "-o", "restore.log"], tmp_path / "job2",
                                cwd=ROOT)
        sessions.append(p2)
        wait_for(lambda: not gone(pid) and _tty_stat(pid)[1] == pid, what="the restored job in the foreground")
        tty_nr, tpgid, pgrp = _tty_stat(pid)
        assert tty_nr == os.fstat(s2).st_rdev and tpgid == pgrp == pid
        assert os.readlink(f"/proc/{pid}/fd/0") == os.ttyname(s2)
        assert not termios.tcgetattr(s2)[3] & termios.ECHO
        os.kill(pid, signal.SIGUSR1)
        wait_for(lambda: result.exists(), what="the verdict")
        assert result.read_text().strip() == "ok"
        os.set_blocking(m2, False)
        assert b"hello-tty" in wait_for(lambda: _read_some(m2), what="the job's output on the new terminal")
    finally:
        for p in sessions:
            p.kill()
            p.wait()
        for fd in (m1, s1, m2, s2):
            os.close(fd)


def _read_some(fd):
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return None


def test_mappings_of_an_unlinked_file(target_bin, tmp_path):
    path = tmp_path / "mapped"
    assert FilesTarget(target_bin, tmp_path, "mapghost", path, 1 << 20).round_trip() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "result", "result.ready"]


def test_files_directories_devices_and_cwd(target_bin, tmp_path):
    """Files in every access mode at their offsets, O_APPEND, O_NONBLOCK, close-on-exec, a dup
    sharing the offset, a directory fd, an O_PATH fd, /dev/null, /dev/zero, /dev/urandom and
    the cwd in a directory."""
    d = tmp_path / "d"
    d.mkdir()
    assert FilesTarget(target_bin, tmp_path, "misc", d).round_trip() == "ok"


def test_pty_pair_with_bytes_waiting_on_both_sides(target_bin, tmp_path):
    """Same /dev/pts/N, termios, window size; the master still reads what the slave wrote, the
    slave reads the complete line then the partial one, as before the dump."""
    assert FilesTarget(target_bin, tmp_path, "pty").round_trip() == "ok"


def test_pty_bytes_are_not_lost_by_a_dump_that_leaves_the_task_running(target_bin, tmp_path):
    with FilesTarget(target_bin, tmp_path, "pty") as t:
        t.dump("-R")
        assert t.verdict() == "ok"


def test_child_on_a_pty_held_by_its_parent(target_bin, tmp_path):
    """The parent holds the master, the child runs on the slave as its session's controlling
    terminal (foreground); bytes wait at both ends across the dump."""
    assert FilesTarget(target_bin, tmp_path, "ptytree").round_trip() == "ok"


SHARED_WITH_PARENT_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static int kid(void *arg) { (void)arg; for (;;) pause(); }
int main(void)
{
    char *stack = malloc(1 << 16);
    pid_t p = clone(kid, stack + (1 << 16), CLONE_FILES | SIGCHLD, NULL);
    printf("%d\n", p);
    fflush(stdout);
    for (;;) pause();
}
"""


def test_a_task_sharing_its_fd_table_with_a_task_outside_the_dump_is_refused_untouched(tmp_path):
    """Dumping the CLONE_FILES child alone would kill it while its parent keeps the table, and
    restore it with a table of its own: refused with one line, the child left running, untraced."""
    exe = build_c(tmp_path, "shared_with_parent", SHARED_WITH_PARENT_C, "-O1")
    p = subprocess.Popen([exe], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        kid = int(p.stdout.readline())
        res = crpy("dump", "-t", str(kid), "-D", str(tmp_path / "images"))
        err = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(err) == 1, res.stderr
        assert f"shared with pid {p.pid}, outside the dumped tree" in err[0], err
        assert "TracerPid:\t0" in Path(f"/proc/{kid}/status").read_text()
        # detached, it runs until it is back in its sleep
        wait_for(lambda: "State:\tS" in Path(f"/proc/{kid}/status").read_text(), what="the refused child asleep again")
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
