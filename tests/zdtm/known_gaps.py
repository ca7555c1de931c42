"""zdtm tests that fail through a known gap of crpy, each with the reason.

A test listed here still runs with every C/R run.  Its failure is reported as KNOWN-GAP (with the
reason) and does not fail the run; if it passes, it is reported as FIXED and that does fail the
run, so that this list never hides a test that works (pytest: xfail, strict).  Checks of the tests
themselves (--no-cr, --break) ignore this list.
"""

GAPS = {
    "itimers": "restore: interval timers (ITIMER_REAL/PROF) are not re-armed; dump: a SIGALRM arriving "
               "during an injected syscall sometimes fails the dump",
    "taskstate": "restore: the timer slack (PR_SET_TIMERSLACK) is not restored",
}
