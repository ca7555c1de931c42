"""The harness must be able to fail: it is run against fake C/R tools (ZDTM_CRPY) that misbehave
in the ways a broken crpy could, and must report each one, with a non-zero exit."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.zdtm import harness

FAKE = textwrap.dedent("""
    import os, signal, subprocess, sys
    args = sys.argv[1:]
    mode = os.environ["FAKE_MODE"]
    def opt(name):
        return args[args.index(name) + 1]
    if args[0] == "dump":
        if mode == "dump-fails":
            print("fake: cannot dump", file=sys.stderr)
            sys.exit(1)
        if mode == "dump-fails-2-lines":
            print("fake: cannot dump\\nfake: and a traceback", file=sys.stderr)
            sys.exit(1)
        if mode == "dump-echoes-args":
            print("fake dump args:", *args, file=sys.stderr)
            sys.exit(1)
        if mode != "dump-leaves-task":
            os.kill(int(opt("-t")), signal.SIGKILL)
        sys.exit(0)
    if args[0] == "restore":
        pidfile = opt("--pidfile")
        if mode == "restore-other-pid":
            child = subprocess.Popen(["sleep", "600"], start_new_session=True)
            open(pidfile, "w").write(f"{child.pid}\\n")
        sys.exit(0)
""")


@pytest.fixture
def fake_crpy(tmp_path):
    path = tmp_path / "fake_crpy.py"
    path.write_text(FAKE)
    return f"{sys.executable} {path}"


def run_with(fake, mode, test="busyloop"):
    env = dict(harness.crpy_env(), ZDTM_CRPY=fake, FAKE_MODE=mode)
    proc = subprocess.run([sys.executable, "-m", "tests.zdtm.run", test], cwd=harness.REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode, message", [
    ("dump-fails", "crpy dump exited with 1: fake: cannot dump"),
    ("dump-leaves-task", "still running after the dump"),
    ("no-pidfile", "wrote no usable pidfile"),
    ("restore-other-pid", "want "),
])
def test_harness_reports_a_broken_cr_tool(fake_crpy, mode, message):
    rc, out = run_with(fake_crpy, mode)
    assert rc == 1, out
    assert message in out, out
    assert "0 passed, 1 failed" in out, out


def test_harness_leaves_no_process(fake_crpy):
    """After the failed runs above, nothing the fake started may be left (the harness kills it)."""
    rc, out = run_with(fake_crpy, "restore-other-pid")
    assert rc == 1, out
    sleepers = subprocess.run(["pgrep", "-f", "^sleep 600$"], capture_output=True, text=True).stdout.split()
    assert not sleepers, f"left behind: {sleepers}"


@pytest.mark.parametrize("test, mode, message", [
    # a tree: the fake kills only the root; the children must be found still there
    ("shared_counter", "kill-root-only", "pids of the tree still there after the dump"),
    # a dump that must fail: succeeding, or failing with more than one line, is reported
    ("unsupported_fd", "kill-root-only", "the dump succeeded, but it must fail"),
    ("unsupported_fd", "dump-fails-2-lines", "a failed dump must print one line, printed 2"),
    # per-test options reach the C/R tool
    ("locks", "dump-echoes-args", "--file-locks"),
])
def test_harness_checks_trees_failing_dumps_and_options(fake_crpy, test, mode, message):
    rc, out = run_with(fake_crpy, mode, test)
    assert rc == 1, out
    assert message in out, out
    assert "0 passed, 1 failed" in out, out


def test_a_test_the_cpu_cannot_run_is_skipped_by_name():
    """pkeys needs protection keys: on a CPU without them (hidden here, so on every CPU) it is not
    started, and reported once as SKIP naming the missing flags; the run does not fail."""
    env = dict(harness.crpy_env(), ZDTM_HIDE_CPU_FLAGS="pku")
    proc = subprocess.run([sys.executable, "-m", "tests.zdtm.run", "pkeys", "--iters", "1,3"],
                          cwd=harness.REPO, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("SKIP      pkeys: needs CPU feature pku") == 1, out
    assert "which this CPU lacks" in out and "0 passed, 0 failed, 1 skipped" in out, out


def test_a_test_that_cannot_run_here_is_a_skip_with_its_reason():
    """hugetlb skips itself (test_skip) when the kernel has no huge pages to give: the harness
    says SKIP with the test's reason, counts it as skipped and exits 0; never PASS."""
    env = dict(harness.crpy_env(), ZDTM_NR_HUGEPAGES="/nonexistent/nr_hugepages")
    proc = subprocess.run([sys.executable, "-m", "tests.zdtm.run", "hugetlb", "--iters", "1,3"],
                          cwd=harness.REPO, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "SKIP      hugetlb: no hugetlb pages in this kernel" in out, out
    assert "/nonexistent/nr_hugepages" in out, out
    assert "0 passed, 0 failed, 1 skipped" in out, out
    assert "PASS" not in out, out


def test_vma_check_sees_a_changed_vmflag():
    """The post-restore VMA check compares maps lines (no device, inode) with VmFlags and page size."""
    import ctypes
    import mmap as mm

    from tests.zdtm import procstate

    m = mm.mmap(-1, 4 * 4096, flags=mm.MAP_PRIVATE | mm.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    def mine():
        for v in procstate.vmas(os.getpid()):
            lo, hi = (int(x, 16) for x in v[0].split()[0].split("-"))
            if lo <= addr < hi:
                return v
    before = procstate.vmas(os.getpid())
    assert mine()[2] == "4 kB" and " rd " in f" {mine()[1]} "
    assert ctypes.CDLL(None).madvise(ctypes.c_void_p(addr), 4 * 4096, 10) == 0    # MADV_DONTFORK
    after = procstate.vmas(os.getpid())
    assert "dc" in mine()[1].split()
    diffs = procstate.vma_differences(before, after)
    assert diffs and "dc" in diffs[0]
    assert procstate.vma_differences(after, after) == []
