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

import pytest

from tests.zdtm import build, harness
# _case, run_harness, skip_if_skipped, verdict_word: also imported from here by other modules
from tests.zdtm.cases import (_case, counts, expect_pass, run_harness, skip_if_skipped,  # noqa: F401
                              verdict_word, zdtm_tests)

TESTS = build.all_tests()


@pytest.mark.parametrize("iters", [1, 3])
@zdtm_tests(TESTS)
def test_dump_restore(name, iters):
    expect_pass(name, "--iters", str(iters))


@zdtm_tests(TESTS, leave_running=True)
def test_dump_leave_running_then_restore(name):
    """crpy dump -R leaves the task running unchanged; restoring those images works too."""
    expect_pass(name, "--iters", "1", leave_running=True)


def test_every_test_passes_without_cr():
    """Every test passes, or says by name why this machine cannot run it (SKIP with a reason)."""
    rc, out = run_harness("--all", "--no-cr")
    assert rc == 0, out
    passed, failed, skipped = counts(out)
    assert (passed, failed) == (len(TESTS) - skipped, 0), out
    assert len(re.findall(r"^SKIP +\S+: \S", out, re.M)) == skipped, out


def test_every_check_can_fail():
    rc, out = run_harness("--all", "--no-cr", "--break")
    assert rc == 0, out
    assert out.count("DETECTED") == len(TESTS) - counts(out)[2], out


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


@zdtm_tests(LAZY_TESTS)
def test_lazy_restore(name):
    expect_pass(name, "--iters", "3", "--lazy")
