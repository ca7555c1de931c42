"""The protocol of the Python C/R targets (tests/unit/test_python_targets.py), like zdtm's for C.

A target runs as `python3 TARGET.py OUTFILE`.  It sets up its state, writes "ready" to OUTFILE,
then works in a loop and keeps OUTFILE.progress up to date (one number that only grows, so the
test sees the work go on after a restore).  On SIGTERM it leaves the loop, checks its whole state
and appends "PASS" or "FAIL: reason" to OUTFILE.  With ZDTM_BREAK=1 in the environment it damages
its state just before the check, which shows the check is able to fail.
"""

import os
import signal
import sys
import traceback


class Target:
    def __init__(self):
        self.out = sys.argv[1]
        self.breaking = os.environ.get("ZDTM_BREAK") == "1"
        self.term = False
        self._progress = os.open(self.out + ".progress", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum, frame):
        self.term = True

    def write(self, text):
        with open(self.out, "a") as f:
            f.write(text + "\n")

    def ready(self):
        self.write("ready")

    def progress(self, n):
        os.pwrite(self._progress, b"%20d\n" % n, 0)

    def finish(self, check):
        """check() returns a list of problems (empty: the state is as it should be)."""
        try:
            problems = check()
        except Exception:
            problems = ["the check raised: " + traceback.format_exc().replace("\n", " | ")]
        self.write("PASS" if not problems else "FAIL: " + "; ".join(problems))
