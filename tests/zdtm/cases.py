"""How the pytest modules of tests/zdtm run zdtm tests through the harness CLI.

`zdtm_tests(NAMES)` parametrizes a pytest test over zdtm test names (a known gap is a strict
xfail, a test this CPU cannot run a skip naming what it lacks); `run_harness(...)` is one run of
`python3 -m tests.zdtm.run` in a subprocess (the harness makes itself a child subreaper; a
subprocess keeps that out of pytest); `expect_pass(NAME, ...)` and `expect_detected(NAME, ...)`
run it and check the verdict the harness printed for NAME.
"""

import re
import subprocess
import sys

import pytest

from tests.zdtm import desc, harness
from tests.zdtm.known_gaps import gap as known_gap

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


def zdtm_tests(names, leave_running=False):
    """The pytest parametrization of argument `name` over these zdtm tests."""
    return pytest.mark.parametrize("name", [_case(n, leave_running) for n in names])


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


def counts(out):
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


def expect_pass(name, *args, leave_running=False):
    """Run test `name` with these harness arguments: it passes (FIXED, a known gap that passes, makes
    the strict xfail of its case fail); a SKIP of it is a pytest skip with its reason."""
    if leave_running:
        args = (*args, "--leave-running")
    rc, out = run_harness(name, *args)
    skip_if_skipped(out, name)
    assert verdict_word(out, name) in ("PASS", "FIXED"), out
    assert rc == 0 or known_gap(name, leave_running), out


def expect_detected(name, *args):
    """Run test `name` with these harness arguments and --break: its own check reports the damage."""
    rc, out = run_harness(name, *args, "--break")
    assert verdict_word(out, name) == "DETECTED" and rc == 0, out
