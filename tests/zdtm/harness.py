"""The zdtm harness core: start a test, dump and restore it with crpy N times, stop it, judge it.

The harness makes itself a child subreaper, so that daemonized tests and tasks restored with
`crpy restore -d` are its children: it can reap them and see how they ended.  crpy always runs as
`sys.executable -m crpy` from the repository root.  One iteration is:

    crpy dump -t PID -D DIR -v4 -o dump.log      -> PID must be gone (killed, reaped)
    crpy restore -D DIR -d --pidfile F -v4 -o restore.log   -> the restored pid must be PID,
                                                               every VMA as before (maps, VmFlags)

and at the end SIGTERM makes the test check itself and write PASS or FAIL as its last line.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from tests.zdtm import build, desc, procstate
from tests.zdtm import lazy as lazy_restore
from tests.zdtm.procs import (HarnessError, children_of, describe_status, kill_and_reap, kill_leftovers,
                              proc_state, reap, reap_strays)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT = 60
CRPY_TIMEOUT = 300
STOP_TIMEOUT = 60
RUN_AFTER_RESTORE = 0.2   # seconds the restored task runs before the next step
SETTLE = 0.1              # seconds a busy test (desc "busy": never all asleep) gets to reach its loop
SETTLE_MAX = 2.0          # seconds any other test gets to be asleep at its waiting point


SKIP_EXIT = 77             # a test's exit code when it skips itself (zdtmtst.h ZDTM_SKIP_EXIT)


class TestSkipped(HarnessError):
    """The test said at setup that it cannot run here (test_skip()); the message is its reason."""


@dataclass
class Result:
    name: str
    iters: int
    passed: bool
    reason: str = ""
    details: list = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False     # the test found at setup that this machine lacks what it needs


def crpy_command(*args):
    """The crpy command line; ZDTM_CRPY (e.g. "criu", or a fake for the harness's own tests)
    replaces `python3 -m crpy` when set."""
    prefix = os.environ.get("ZDTM_CRPY")
    return (shlex.split(prefix) if prefix else [sys.executable, "-m", "crpy"]) + [str(a) for a in args]


def crpy_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def run_crpy(*args, env=None, timeout=CRPY_TIMEOUT):
    """Run crpy to completion; returns a CompletedProcess with text stdout/stderr.  The output goes
    through files, not pipes: a task that inherits them (a broken restore) cannot hang us."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.run(crpy_command(*args), cwd=REPO, env=crpy_env(env), stdout=out,
                                  stderr=err, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"crpy {args[0]} did not finish in {timeout} s") from e
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(l if len(l) <= 400 else l[:400] + " ...\n" for l in f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e.strerror})"


class ZdtmTest:
    """One running instance of a C test, in a work directory of its own."""

    def __init__(self, name, workdir, env=None):
        self.name = name
        self.workdir = workdir
        self.pidfile = os.path.join(workdir, f"{name}.pid")
        self.outfile = os.path.join(workdir, f"{name}.out")
        self.env = env
        self.pid = None
        self.tree = []   # every pid of a test that forks (from OUTFILE.pids), the root included
        self.opts = desc.options(name)
        self.details = []
        self.lazy_daemon = None   # `crpy lazy-pages` of the last restore, while it serves

    def start(self):
        exe = build.build([self.name])[0]
        cmd = [exe, f"--pidfile={self.pidfile}", f"--outfile={self.outfile}"]
        env = dict(os.environ, **(self.env or {}))
        try:
            proc = subprocess.run(cmd, cwd=self.workdir, env=env, capture_output=True, text=True,
                                  timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"{self.name} did not become ready in {START_TIMEOUT} s") from e
        if proc.returncode == SKIP_EXIT:
            raise TestSkipped(self.verdict_line().removeprefix("SKIP: "))
        if proc.returncode != 0:
            raise HarnessError(f"{self.name} failed to start (exit {proc.returncode}): "
                               f"{proc.stderr.strip()} {self.verdict_line()}")
        with open(self.pidfile) as f:
            self.pid = int(f.read().strip())
        self.tree = self._read_tree()
        # Let it get from test_daemon() to its waiting point (sigsuspend, its loop): whoever looks
        # at it next (a dump, a snapshot) should see the steady state, not the way there.  A fixed
        # 0.1 s was too short on a loaded machine; a test that sleeps there is waited for until
        # every thread of its tree sleeps (or is stopped), one that spins only for SETTLE.
        if self.opts.get("busy"):
            time.sleep(SETTLE)
        else:
            wait_asleep(self.tree or [self.pid], SETTLE_MAX)
        return self.pid

    def _read_tree(self):
        try:
            with open(self.outfile + ".pids") as f:
                return sorted({int(l) for l in f if l.strip()} | {self.pid})
        except FileNotFoundError:
            return []

    def outfile_text(self):
        try:
            with open(self.outfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def verdict_line(self):
        lines = [l for l in self.outfile_text().splitlines() if l.strip()]
        return lines[-1] if lines else ""

    def stop(self):
        """SIGTERM, wait for the exit, return (passed, reason)."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid = None
            return False, f"the test was gone before its SIGTERM; last line: {self.verdict_line()!r}"
        status = reap(self.pid, STOP_TIMEOUT)
        self.pid = None
        verdict = self.verdict_line()
        if status is not None and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            return False, f"test {describe_status(status)}; last line: {verdict!r}"
        if verdict == "PASS":
            return True, "PASS"
        if verdict.startswith("FAIL"):
            return False, verdict
        return False, f"no verdict; last line: {verdict!r}"

    def kill(self):
        if self.pid:
            kill_and_reap(self.pid)
            self.pid = None


def thread_states(pid):
    """The State letters of every thread of pid (empty once it is gone)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [proc_state(f"{pid}/task/{tid}") for tid in tids]


def wait_asleep(pids, timeout):
    """Wait until no thread of pids runs or waits in D (each sleeps, is stopped, or is a zombie);
    returns whether that happened within timeout (a test that keeps a thread busy never does)."""
    deadline = time.monotonic() + timeout
    while any(st in ("R", "D") for pid in pids for st in thread_states(pid)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def check_tree_gone(tree):
    """After a dump every pid of the tree must be gone: the subreaper (us) reaps what was reparented."""
    deadline = time.monotonic() + 10
    while True:
        reap_strays()
        alive = [p for p in tree if proc_state(p) is not None]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"pids of the tree still there after the dump: "
                               f"{[(p, proc_state(p)) for p in alive]}")
        time.sleep(0.01)


def check_tree_back(tree):
    missing = [p for p in tree if proc_state(p) is None]
    if missing:
        raise HarnessError(f"{len(missing)} of the tree's {len(tree)} pids not back after the restore: {missing}")


def check_vmas_back(before, ignore_flag=None):
    """Every VMA of every task of the tree as before the dump: range, protection, offset, path,
    VmFlags (madvise state, mlock, hugetlb ...) and page size.  (A task restored stopped stands
    in the restorer until SIGCONT: it is not compared.)  ignore_flag: a VmFlag the restored side
    may carry (lazy restore: "um" while the daemon serves).  Polled (procstate.poll_differences,
    up to SETTLE_BACK s), never read once: `crpy restore -d` returns once the root is past its
    restorer, while the other tasks of a tree, given the go, may still be on their way out of
    theirs (its mapping in)."""
    diffs = procstate.poll_differences(lambda: _vma_differences(before, ignore_flag))
    if diffs:
        raise HarnessError(diffs[0])


def _vma_differences(before, ignore_flag):
    """["pid P: how its VMAs differ"] for each task of before whose VMAs are not as before."""
    out = []
    for pid, vmas in before.items():
        if proc_state(pid) in ("T", "t"):
            continue
        after = procstate.vmas(pid)
        if ignore_flag:
            after = [(line, " ".join(f for f in flags.split() if f != ignore_flag), size)
                     for line, flags, size in after]
        diffs = procstate.vma_differences(vmas, after)
        if diffs:
            out.append(f"pid {pid}: " + "; ".join(diffs))
    return out


def dump_must_fail(pid, images_dir, extra=(), pre=0, pre_mode=None):
    """A dump of a task holding something crpy cannot dump: it must fail with one line on stderr and
    leave the task exactly as it was.  With `pre` pre-dump rounds before it (a pre-dump looks at
    memory only, so they usually pass): the refusal, a round's or the dump's, leaves the task as
    it was before the first round."""
    before = procstate.snapshot(pid)
    for n in range(1, pre + 1):
        proc = _pre_dump_round(pid, images_dir, n, pre_mode)
        if proc.returncode != 0:
            return f"pre-dump {n}: " + _refused(pid, before, proc, "pre-dump")
    proc = run_crpy("dump", "-t", pid, "-D", images_dir, "-v4", "-o", "dump.log", *extra,
                    *(["--prev-images-dir", f"pre{pre}", "--track-mem"] if pre else []))
    if proc.returncode == 0:
        raise HarnessError("the dump succeeded, but it must fail for this test")
    return _refused(pid, before, proc, "dump")


def _refused(pid, before, proc, what):
    """The one line a failed crpy `what` printed; HarnessError unless the task is as `before`."""
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    if len(lines) != 1:
        raise HarnessError(f"a failed {what} must print one line, printed {len(lines)}: {proc.stderr!r}")
    if proc_state(pid) in (None, "Z", "X"):
        raise HarnessError(f"pid {pid} did not survive the failed {what}")
    diffs = procstate.settled_differences(pid, before)
    if diffs:
        raise HarnessError(f"the failed {what} changed pid {pid}: " + "; ".join(diffs))
    return lines[0]


def dump(pid, images_dir, env=None, leave_running=False, extra=()):
    """crpy dump; reaps the task as soon as crpy kills it, as a parent that waits for it would.
    With leave_running (crpy dump -R) the task must instead run on exactly as before; the harness
    then kills it itself, so that the images can be restored."""
    before = procstate.snapshot(pid) if leave_running else None
    errfile = os.path.join(images_dir, "dump.stderr")
    argv = (["dump", "-t", pid, "-D", images_dir, "-v4", "-o", "dump.log"] + list(extra)
            + (["-R"] if leave_running else []))
    with open(errfile, "w") as err:   # a file, not a pipe: nothing can block while we poll
        proc = subprocess.Popen(crpy_command(*argv), cwd=REPO, env=crpy_env(env),
                                stdout=subprocess.DEVNULL, stderr=err)
    status, deadline = None, time.monotonic() + CRPY_TIMEOUT
    while proc.poll() is None:
        if status is None:
            status = _try_reap(pid)
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise HarnessError(f"crpy dump did not finish in {CRPY_TIMEOUT} s")
        time.sleep(0.005)
    with open(errfile) as f:
        stderr = f.read()
    if proc.returncode != 0:
        raise HarnessError(f"crpy dump exited with {proc.returncode}: {stderr.strip()}")
    if leave_running:
        _check_left_running(pid, before, status)
        return
    state = proc_state(pid) if status is None else None
    if state not in (None, "Z", "X"):
        raise HarnessError(f"pid {pid} still running after the dump (state {state})")
    if status is None:
        status = reap(pid, 10)
    if status is not None and os.WIFEXITED(status):
        raise HarnessError(f"pid {pid} exited by itself during the dump ({describe_status(status)})")


def _check_left_running(pid, before, status):
    if status is not None or proc_state(pid) in (None, "Z", "X"):
        raise HarnessError(f"pid {pid} did not survive a --leave-running dump ({describe_status(status)})")
    diffs = procstate.settled_differences(pid, before)
    if diffs:
        raise HarnessError(f"--leave-running changed pid {pid}: " + "; ".join(diffs))
    kill_and_reap(pid)


def _try_reap(pid):
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if got == pid else None


def restore(images_dir, want_pid, env=None, extra=()):
    pidfile = os.path.join(images_dir, "restored.pid")
    proc = run_crpy("restore", "-D", images_dir, "-d", "--pidfile", pidfile, "-v4", "-o",
                    "restore.log", *extra, env=env)
    if proc.returncode != 0:
        raise HarnessError(f"crpy restore exited with {proc.returncode}: {proc.stderr.strip()}")
    try:
        with open(pidfile) as f:
            got = int(f.read().strip())
    except (OSError, ValueError) as e:
        raise HarnessError(f"crpy restore wrote no usable pidfile {pidfile}: {e}") from e
    if got != want_pid:
        if got in children_of(os.getpid()):
            kill_and_reap(got)
        raise HarnessError(f"restored pid {got}, want {want_pid}")
    time.sleep(RUN_AFTER_RESTORE)
    state = proc_state(want_pid)
    if state in (None, "Z", "X"):
        status = reap(want_pid, 1)
        raise HarnessError(f"restored task {want_pid} died right away ({describe_status(status)})")
    if state in ("t", "T"):
        raise HarnessError(f"restored task {want_pid} is stopped (state {state})")


def images_root():
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def pre_dumps(pid, images_dir, rounds, mode=None, extra=()):
    """`rounds` crpy pre-dump rounds into images_dir/pre1.. (each after the previous, with time
    between them for the test to change its memory); returns the --prev-images-dir options of
    the final dump into images_dir."""
    for n in range(1, rounds + 1):
        proc = _pre_dump_round(pid, images_dir, n, mode, extra)
        if proc.returncode != 0:
            log_path = os.path.join(images_dir, f"pre{n}", "pre-dump.log")
            raise HarnessError(f"pre-dump {n} failed: {proc.stderr.strip()}\n{tail(log_path)}")
    return ["--prev-images-dir", f"pre{rounds}", "--track-mem"] if rounds else []


def _pre_dump_round(pid, images_dir, n, mode=None, extra=()):
    """Round n (from 1) into images_dir/preN, after the previous one (extra: more pre-dump
    options, --compress); then lets the test run."""
    d = os.path.join(images_dir, f"pre{n}")
    os.mkdir(d)
    proc = run_crpy("pre-dump", "-t", pid, "-D", d, "-v4", "-o", "pre-dump.log", *extra,
                    *(["--prev-images-dir", f"../pre{n - 1}", "--track-mem"] if n > 1 else []),
                    *(["--pre-dump-mode", mode] if mode else []))
    if proc.returncode == 0:
        time.sleep(RUN_AFTER_RESTORE)
    return proc


def run_one(name, iters=1, no_cr=False, keep_images=False, break_state=False, leave_running=False, pre=0,
            pre_mode=None, compress=False, migrate=None, lazy=False):
    """Run one test with `iters` dump/restore cycles (compress: every dump and pre-dump with
    --compress; migrate: crpy migrate with that many rounds instead; lazy: every restore with
    --lazy-pages); returns a Result.  Whatever happens (also
    Ctrl-C or SIGTERM of the harness), the test and anything crpy left are killed and the
    directories removed (unless keep_images)."""
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix=f"zdtm-{name}-")
    test = ZdtmTest(name, workdir, env={"ZDTM_BREAK": "1"} if break_state else None)
    result = Result(name, 0 if no_cr else iters, False)
    images = []
    try:
        try:
            daemon = _run_cycles(test, images, 0 if no_cr else iters, keep_images, leave_running, pre=pre,
                                 pre_mode=pre_mode, compress=compress, migrate=migrate, lazy=lazy)
            result.passed, result.reason = test.stop()
            if daemon:
                lazy_restore.wait_daemon(daemon, images[-1])
        except TestSkipped as e:
            result.skipped, result.reason = True, str(e)
        except HarnessError as e:
            result.reason = str(e)
        finally:
            test.kill()
            lazy_restore.stop_daemon(test.lazy_daemon)
            left = kill_leftovers()
        if left and result.passed:
            result.passed, result.reason = False, f"processes left behind (killed now): {left}"
        if not result.passed and not result.skipped:
            result.details = _failure_details(test, images)
    finally:
        if keep_images:
            result.details.append(f"images kept in {', '.join(images)}; work dir {workdir}")
        else:
            for d in images + [workdir]:
                shutil.rmtree(d, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _run_cycles(test, images, iters, keep_images, leave_running, pre=0, pre_mode=None, compress=False,
                migrate=None, lazy=False):
    """Start the test and put it through `iters` dump/restore cycles (0: just let it run), each
    dump after `pre` pre-dump rounds (and then of only what changed since the last).  lazy (or
    desc "lazy"): each restore with --lazy-pages; returns its daemon, still serving, or None."""
    opts = test.opts
    if not iters and opts.get("needs_cr"):
        raise TestSkipped(f"{test.name} checks what a dump and restore did to it (desc needs_cr): "
                          "without C/R there is nothing to check")
    test.start()
    lazy = lazy or bool(opts.get("lazy"))
    for i in range(iters):
        if test.lazy_daemon:               # every page of the last restore in before the next dump
            lazy_restore.wait_daemon(test.lazy_daemon, images[-1])
            test.lazy_daemon = None
        images.append(tempfile.mkdtemp(prefix=f"zdtm-{test.name}-img{i + 1}-", dir=images_root()))
        step = "dump"
        try:
            if opts.get("dump_fails"):
                test.details.append(f"iteration {i + 1}: the dump failed as it must: "
                                    f"{dump_must_fail(test.pid, images[-1], opts.get('dump', []), pre, pre_mode)}")
                continue
            vmas = {pid: procstate.vmas(pid) for pid in test.tree or [test.pid]}
            if migrate is not None:    # crpy migrate/receive instead (tests.zdtm.netpeers)
                from tests.zdtm import netpeers

                step = "migrate"
                netpeers.migrate_cycle(test, images[-1], migrate, lazy=lazy)
                if test.tree:
                    check_tree_back(test.tree)
                check_vmas_back(vmas)
                continue
            step = "pre-dump"
            packed = ["--compress"] if compress else []
            chain = pre_dumps(test.pid, images[-1], pre, pre_mode, packed)
            step = "dump"
            dump(test.pid, images[-1], leave_running=leave_running, extra=opts.get("dump", []) + chain + packed)
            if test.tree and leave_running:   # the root was killed by dump(); the rest of the tree now
                for pid in test.tree:
                    kill_and_reap(pid)
            if test.tree:
                check_tree_gone(test.tree)
            step = "restore"
            extra = opts.get("restore", [])
            if lazy:
                test.lazy_daemon = lazy_restore.start_daemon(images[-1], opts.get("lazy_push_delay_ms", 0))
                extra = extra + ["--lazy-pages"]
            restore(images[-1], test.pid, extra=extra)
            if test.tree:
                check_tree_back(test.tree)
            check_vmas_back(vmas, lazy_restore.UFFD_FLAG if lazy else None)
        except HarnessError as e:
            raise HarnessError(f"iteration {i + 1}: {step}: {e}") from e
        if not keep_images and i > 0:
            shutil.rmtree(images[-2], ignore_errors=True)
    if not iters:
        time.sleep(RUN_AFTER_RESTORE)   # as a restored test would run before its SIGTERM
    return test.lazy_daemon


def _failure_details(test, images):
    details = []
    if images:
        for log in ("dump.log", "restore.log", "lazy-pages.log"):
            path = os.path.join(images[-1], log)
            if os.path.exists(path):
                details.append(f"--- tail of {log} (iteration {len(images)}) ---\n{tail(path)}")
    details.append(f"--- outfile {test.outfile} ---\n{tail(test.outfile, 40)}")
    return details
