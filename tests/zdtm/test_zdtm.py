"""pytest wrappers around the zdtm harness.

Every C test runs through crpy dump/restore with 1 and with 3 iterations, and once with a
--leave-running dump (the task must run on unchanged; then it is killed and restored), each case one run of
`python3 -m tests.zdtm.run NAME --iters N` in a subprocess (the harness makes itself a child
subreaper; a subprocess keeps that out of pytest).  The tests themselves are checked too: each must
pass without C/R, and each must report FAIL when its state is broken on purpose (ZDTM_BREAK) or
when the harness corrupts its memory from outside with process_vm_writev.
"""

import ctypes
import re
import subprocess
import sys

import pytest

from tests.zdtm import build, desc, harness
from tests.zdtm.known_gaps import gap as known_gap

TESTS = build.all_tests()
WORDS = ("PASS", "FAIL", "FIXED", "KNOWN-GAP", "DETECTED", "MISSED", "SKIP")


def _case(name, leave_running=False):
    """A test name as a pytest parameter; known gaps are strict xfails (run, reported, never hidden);
    a test this CPU cannot run is a skip whose reason names the missing CPU features."""
    unmet = desc.skip_reason(name)
    if unmet:
        return pytest.param(name, marks=pytest.mark.skip(reason=f"zdtm {name} {unmet}"))
    reason = known_gap(name, leave_running)
    if reason:
        return pytest.param(name, marks=pytest.mark.xfail(reason=f"known gap: {reason}", strict=True))
    return name


def verdict_word(out, name):
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in WORDS and parts[1].rstrip(":") == name:
            return parts[0]
    return None


def skip_if_skipped(out, name):
    """A test that said it cannot run on this machine is a pytest skip with its reason."""
    if verdict_word(out, name) == "SKIP":
        line = next(l for l in out.splitlines() if l.startswith("SKIP") and f" {name}:" in l)
        pytest.skip(f"zdtm {line.split(None, 1)[1]}")


def _counts(out):
    """(passed, failed, skipped) of the harness's summary line."""
    m = re.search(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?", out, re.M)
    assert m, out
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def run_harness(*args, timeout=900):
    """Run the harness CLI; on a timeout it gets SIGTERM first, so that it cleans up after itself."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.zdtm.run", *args], cwd=harness.REPO,
                            env=harness.crpy_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"the harness did not finish in {timeout} s:\n{out}")
    return proc.returncode, out


@pytest.mark.parametrize("iters", [1, 3])
@pytest.mark.parametrize("name", [_case(n) for n in TESTS])
def test_dump_restore(name, iters):
    rc, out = run_harness(name, "--iters", str(iters))
    skip_if_skipped(out, name)
    assert verdict_word(out, name) in ("PASS", "FIXED"), out
    assert rc == 0 or known_gap(name), out


@pytest.mark.parametrize("name", [_case(n, leave_running=True) for n in TESTS])
def test_dump_leave_running_then_restore(name):
    """crpy dump -R leaves the task running unchanged; restoring those images works too."""
    rc, out = run_harness(name, "--iters", "1", "--leave-running")
    skip_if_skipped(out, name)
    assert verdict_word(out, name) in ("PASS", "FIXED"), out
    assert rc == 0 or known_gap(name, leave_running=True), out


def test_every_test_passes_without_cr():
    """Every test passes, or says by name why this machine cannot run it (SKIP with a reason)."""
    rc, out = run_harness("--all", "--no-cr")
    assert rc == 0, out
    passed, failed, skipped = _counts(out)
    assert (passed, failed) == (len(TESTS) - skipped, 0), out
    assert len(re.findall(r"^SKIP +\S+: \S", out, re.M)) == skipped, out


def test_every_check_can_fail():
    rc, out = run_harness("--all", "--no-cr", "--break")
    assert rc == 0, out
    assert out.count("DETECTED") == len(TESTS) - _counts(out)[2], out


def test_vector_says_what_it_did_not_check(tmp_path):
    """The AVX-512 part is reported by name when the CPU lacks it, never skipped silently."""
    test = harness.ZdtmTest("vector", str(tmp_path))
    test.start()
    try:
        passed, reason = test.stop()
    finally:
        test.kill()
    text = test.outfile_text()
    assert passed, text
    assert "avx512: checked" in text or "avx512: not present on this CPU, not checked" in text, text
    assert "avx: checked ymm0-15" in text or "avx: not present" in text, text


def _process_vm_writev(pid, addr, data):
    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(data, len(data))
    local = IoVec(ctypes.cast(buf, ctypes.c_void_p), len(data))
    remote = IoVec(addr, len(data))
    libc.process_vm_writev.restype = ctypes.c_ssize_t
    n = libc.process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n != len(data):
        raise OSError(ctypes.get_errno(), f"process_vm_writev into {pid}")


def test_mem256_catches_outside_corruption(tmp_path):
    """Flip bytes in the test's memory from the outside: its own check must report it."""
    test = harness.ZdtmTest("mem256", str(tmp_path))
    test.start()
    try:
        area = int(re.search(r"area (0x[0-9a-f]+)", test.outfile_text()).group(1), 16)
        _process_vm_writev(test.pid, area + (100 << 20) + 4096 * 7 + 13, b"\xde\xad")
        passed, reason = test.stop()
    finally:
        test.kill()
    assert not passed, test.outfile_text()
    assert "MiB 100 differs" in test.outfile_text(), test.outfile_text()


# Tests run with `run --lazy` (restore --lazy-pages, a crpy lazy-pages daemon serving the memory):
# big memory, many VMA kinds, a tree, threads, a fork after the restore, guard regions.
LAZY_TESTS = ["mem256", "maps", "tree5", "forkafter", "threads_futex", "stack", "vmflags", "guard",
              "brk", "dirtymem"]


@pytest.mark.parametrize("name", [_case(n) for n in LAZY_TESTS])
def test_lazy_restore(name):
    rc, out = run_harness(name, "--iters", "3", "--lazy")
    skip_if_skipped(out, name)
    assert verdict_word(out, name) in ("PASS", "FIXED"), out
    assert rc == 0 or known_gap(name), out
