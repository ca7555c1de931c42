"""zdtm tests that fail through a known gap of crpy, each with the reason.

A test listed here still runs with every C/R run.  Its failure is reported as KNOWN-GAP (with the
reason) and does not fail the run; if it passes, it is reported as FIXED and that does fail the
run, so that this list never hides a test that works (pytest: xfail, strict).  Checks of the tests
themselves (--no-cr, --break) ignore this list.  A key "NAME --leave-running" is a gap of that
mode only (crpy dump -R, then restore); a plain "NAME" covers every C/R run of the test.
"""

GAPS = {
    "epoll_et": "an edge-triggered event reported before the dump is reported once more after restore: "
                "epoll_ctl(ADD) queues every registration whose file is ready, and no /proc file says "
                "which edges the task has already been told of (crpy.resources.eventpoll)",
    "aio_inflight": "an AIO request pending through the whole dump is lost: no interface outside the kernel "
                    "lists a context's requests in flight (the ring holds completions only), so the dump "
                    "cannot see it to refuse it (crpy.resources.aio; criu does not check either)",
}


def gap(name, leave_running=False):
    """The reason a run of test `name` is a known gap, or None."""
    return (leave_running and GAPS.get(f"{name} --leave-running")) or GAPS.get(name)
