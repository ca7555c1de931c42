"""Python programs through crpy: a compute loop, a threaded program, one on many modules and C
extensions, an epoll event loop on a timerfd, an eventfd, a signalfd and a pipe, and an asyncio
loop with timers and a signal handler (its self-pipe is a unix socket pair) (tests/unit/pytargets/), each dumped, checked gone, restored and seen working on, 1
and 3 times; then the program checks its own state (pytargets/common.py says how).

They run on crpy's own interpreter (sys.executable): the restored task maps the very binary
crpy runs on, which the kernel's exe-file rule once made fail (crpy.restore.exe)."""

import os
import sys
from pathlib import Path

import pytest

from crpy.kernel import proc
from tests.unit.crhelpers import (
    SelfCheckingTarget, build_c, crpy, gone, kill_quietly, read_text, start_target, wait_for)

TARGETS = Path(__file__).with_name("pytargets")


def _progress(t):
    text = read_text(f"{t.out}.progress").strip()
    return int(text) if text else 0


def _start(name, tmp_path, env=None):
    return SelfCheckingTarget(sys.executable, tmp_path, args=[TARGETS / f"{name}.py"], env=env)


@pytest.mark.parametrize("iters", [1, 3])
@pytest.mark.parametrize("name", ["compute", "threads", "modules", "evloop", "asyncio_loop"])
def test_python_program_runs_on_after_restore(name, iters, tmp_path):
    with _start(name, tmp_path) as t:
        for n in range(iters):
            before = wait_for(lambda: _progress(t), what="progress")
            images = tmp_path / f"img{n}"
            t.dump(images)
            wait_for(lambda: gone(t.pid), 10, f"pid {t.pid} gone after the dump")
            at_dump = _progress(t)
            assert at_dump >= before
            t.restore(images)
            wait_for(lambda: _progress(t) > at_dump, what=f"{name} working on after restore {n + 1}")
            assert os.readlink(f"/proc/{t.pid}/exe") == os.path.realpath(sys.executable)
        # evloop checks it saw 10 timer ticks (its progress) in all: on a quiet machine a single
        # restore can come back sooner than that
        wait_for(lambda: _progress(t) >= 10, what=f"{name} making 10 steps of progress")
        t.verdict(main_sleeps_in=None)


@pytest.mark.parametrize("name", ["compute", "threads", "modules", "evloop", "asyncio_loop"])
def test_python_target_check_can_fail(name, tmp_path):
    """ZDTM_BREAK=1: the target damages its state before its check, which must then say FAIL."""
    with _start(name, tmp_path, env={**os.environ, "ZDTM_BREAK": "1"}) as t:
        wait_for(lambda: _progress(t), what="progress")
        t.verdict(main_sleeps_in=None, want="FAIL")


MAPS_A_FILE = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0 || mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
		return 1;
	close(fd);
	FILE *out = fopen(argv[2], "w");
	fputs("ready\n", out);
	fclose(out);
	for (;;)
		pause();
}
"""


def test_a_task_mapping_crpys_interpreter_as_another_file_is_refused_untouched(tmp_path):
    """Its exe is not crpy's python3 but it maps it: the kernel would refuse the exe at restore
    (EBUSY), so the dump refuses it in one line and leaves it running."""
    exe = os.path.realpath("/proc/self/exe")
    binary = build_c(tmp_path, "maps_a_file", MAPS_A_FILE)
    out = tmp_path / "out"
    p = start_target([binary, exe, out], lambda: "ready" in read_text(out))
    try:
        maps = proc.maps(p.pid, vmflags=False)
        r = crpy("dump", "-t", p.pid, "-D", tmp_path / "imgs")
        assert r.returncode == 1 and "the interpreter crpy runs on" in r.stderr and exe in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        st = proc.status(p.pid)
        assert st.state in "SR" and st.tracer_pid == 0 and proc.maps(p.pid, vmflags=False) == maps
    finally:
        kill_quietly(p.pid)
        p.wait()
