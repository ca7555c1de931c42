"""Run zdtm tests through crpy dump/restore.

    python3 -m tests.zdtm.run NAME [NAME...] [--iters N[,N...]] [--all] [--no-cr] [--keep-images]
                              [--break] [--leave-running] [--pre N] [--compress] [--migrate N] [--lazy]

--all runs every test; without --iters it runs each with 1 and with 3 dump/restore iterations
(named tests default to 1).  --no-cr starts and stops the tests without dumping them (to check the
tests themselves).  --break sets ZDTM_BREAK=1 so that each test damages its own state before its
check: then a test passes the run only if it reports FAIL (proof that its check can fail).
--leave-running dumps with -R: the task must run on unchanged (maps, fds, signal state, untraced);
the harness then kills it and restores the images.
--pre N runs N `crpy pre-dump` rounds before each dump, which then saves only the pages changed
since the last round (--prev-images-dir --track-mem): restore reads them through the chain.
--compress dumps (and pre-dumps) with --compress: restore reads the compressed page images.
--migrate N replaces dump and restore by `crpy migrate` with N pre-copy rounds to `crpy receive`
running in a network namespace made for the run (veth link, removed after); 1 iteration only.
--lazy restores with --lazy-pages: the harness starts `crpy lazy-pages` first (tests/zdtm/lazy.py);
with --migrate N it is `crpy migrate --lazy` (post-copy after N pre-copy rounds).
ZDTM_CRPY="cmd ..." in the environment replaces `python3 -m crpy` as the C/R tool.
Tests listed in tests/zdtm/known_gaps.py run too; their failure is reported as KNOWN-GAP with the
reason and does not fail the run, but their passing (FIXED) does, so the list stays honest.
A test that needs a CPU feature this machine lacks (tests/zdtm/desc.py "needs") does not run: it
is reported once as SKIP with the missing features named, and counted as skipped.
A test that finds at setup that this machine cannot give it what it needs (test_skip(), e.g. no
huge pages) is reported once as SKIP with its reason and counted as skipped.
Prints one line per run and a summary `N passed, M failed[, K skipped]`; exits 0 only if every run
passed.
"""

import argparse
import signal
import sys

from tests.zdtm import build, desc, harness, procs
from tests.zdtm.known_gaps import gap as known_gap


def _iters(text):
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("iterations are positive integers, e.g. 1 or 1,3")
    return values


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m tests.zdtm.run", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="tests to run (see --list)")
    p.add_argument("--all", action="store_true", help="run every test")
    p.add_argument("--iters", type=_iters, help="dump/restore iterations, e.g. 3 or 1,3")
    p.add_argument("--no-cr", action="store_true", help="no dump/restore: start, SIGTERM, verdict")
    p.add_argument("--leave-running", action="store_true",
                   help="dump with -R: the task must run on unchanged; the harness kills it, then restores")
    p.add_argument("--keep-images", action="store_true", help="keep image and work directories")
    p.add_argument("--break", dest="break_state", action="store_true",
                   help="ask each test to damage its state: expect every test to report FAIL")
    p.add_argument("--pre", type=int, default=0, metavar="N",
                   help="N crpy pre-dump rounds before each dump, which then saves only what changed")
    p.add_argument("--pre-mode", choices=("splice", "read"), default=None,
                   help="crpy pre-dump --pre-dump-mode of those rounds (crpy's default if not given)")
    p.add_argument("--compress", action="store_true", help="dump and pre-dump with --compress (lz4 page images)")
    p.add_argument("--migrate", type=int, metavar="N",
                   help="instead of dump/restore: crpy migrate with N pre-copy rounds to crpy receive in a "
                        "network namespace made for the run (1 iteration)")
    p.add_argument("--lazy", action="store_true",
                   help="restore with --lazy-pages, a `crpy lazy-pages` daemon serving the memory")
    p.add_argument("--list", action="store_true", help="list the tests and exit")
    args = p.parse_args(argv)
    if not args.list and not args.all and not args.names:
        p.error("name a test, or use --all")
    return args


def _judge(result, args):
    """(word, ok, counted as a known gap) for one run."""
    if args.break_state:
        ok = not result.passed and result.reason.startswith("FAIL")
        return ("DETECTED" if ok else "MISSED"), ok, False
    gap = known_gap(result.name, args.leave_running) if not args.no_cr else None
    if gap:
        return ("FIXED" if result.passed else "KNOWN-GAP"), not result.passed, not result.passed
    return ("PASS" if result.passed else "FAIL"), result.passed, False


def _report(result, args):
    """Print one line (and the details of a failure); returns (ok, known gap)."""
    word, ok, gap = _judge(result, args)
    mode = "no C/R" if args.no_cr else f"{result.iters} iteration{'s' if result.iters != 1 else ''}"
    mode += ", leave-running" if args.leave_running and not args.no_cr else ""
    line = f"{word:9} {result.name} ({mode}, {result.seconds:.1f} s)"
    reason = known_gap(result.name, args.leave_running)
    if word == "FIXED":
        line += f": passes now; remove it from tests/zdtm/known_gaps.py ({reason})"
    elif word == "KNOWN-GAP":
        line += f": {reason}; this run: {result.reason}"
    elif not ok or args.break_state:
        line += f": {result.reason}"
    print(line, flush=True)
    if not ok:
        for d in result.details:
            print(d.rstrip(), flush=True)
    return ok, gap


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tests = build.all_tests()
    if args.list:
        print("\n".join(tests))
        return 0
    names = tests if args.all else args.names
    unknown = [n for n in names if n not in tests]
    if unknown:
        print(f"unknown test(s): {', '.join(unknown)}; known: {', '.join(tests)}", file=sys.stderr)
        return 2
    try:
        build.build(names)
    except build.BuildError as e:
        print(e, file=sys.stderr)
        return 2
    iters = [1] if args.no_cr else args.iters or ([1, 3] if args.all else [1])
    if args.migrate is not None and iters != [1]:
        print("--migrate runs 1 iteration: the migrated task lives in the run's namespaces, which a "
              "dump refuses", file=sys.stderr)
        return 2
    procs.set_subreaper()
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the running test is killed and cleaned up.
    signal.signal(signal.SIGTERM, _interrupted)
    passed = failed = gaps = skipped = 0
    try:
        for name in names:
            reason = desc.skip_reason(name)
            if reason:
                print(f"{'SKIP':9} {name}: {reason}", flush=True)
                skipped += 1
                continue
            for n in iters:
                result = harness.run_one(name, n, no_cr=args.no_cr, keep_images=args.keep_images,
                                         break_state=args.break_state, leave_running=args.leave_running,
                                         pre=args.pre, pre_mode=args.pre_mode, compress=args.compress,
                                         migrate=args.migrate, lazy=args.lazy)
                if result.skipped:     # the machine lacks what it needs: once, with the reason
                    print(f"{'SKIP':9} {name}: {result.reason}", flush=True)
                    skipped += 1
                    break
                ok, gap = _report(result, args)
                gaps += gap
                passed += ok and not gap
                failed += not ok
    except KeyboardInterrupt:
        print(f"interrupted after {passed} passed, {failed} failed", flush=True)
        return 130
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
          + (f", {gaps} known gaps (tests/zdtm/known_gaps.py)" if gaps else ""))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
