"""`crpy dump -t ROOT` of a whole process tree and `crpy restore` of it, on a real tree of a small
C program compiled here: three levels, two sessions, process groups whose leader is the task, its
parent or a sibling, two zombies (an exit code and a signal), private memory that differs per
task, and an anonymous shared counter and a memfd every task maps.  After the restore every task has its
PID, parent, group and session back, the root reaps its zombies with the right status, and a
write to the shared counter in one task is seen by all."""

import contextlib
import os
import signal
import time

import pytest

from crpy.errors import NoSuchProcess
from crpy.images import framing
from crpy.kernel import proc
from tests.unit.crhelpers import NR_PAUSE, build_c, crpy, kill_quietly, read_text, sleeps_in, start_target, wait_for
from tests.zdtm import procs

TREE_C = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t report, bump;
static long secret;                 /* private, different in every task */
static volatile long *shared;       /* MAP_SHARED|MAP_ANONYMOUS, one object for the tree */
static volatile long *mshared;      /* a MAP_SHARED memfd (its fd closed), one object too */
static const char *dir;

static void on_usr1(int s) { (void)s; report = 1; }
static void on_usr2(int s) { (void)s; bump = 1; }

static void put(const char *name, const char *text)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

static void serve(int root)
{
    char name[64], text[256];
    for (;;) {
        pause();
        if (bump) { bump = 0; __atomic_add_fetch(shared, 1, __ATOMIC_SEQ_CST); (*mshared)++; }
        if (!report) continue;
        report = 0;
        if (root) {
            int st, n = 0; pid_t z;
            text[0] = 0;
            while ((z = waitpid(-1, &st, WNOHANG)) > 0)
                n += snprintf(text + n, sizeof text - n, "%d %#x\n", z, st);
            put("reaped", text);
        }
        snprintf(name, sizeof name, "alive-%d", getpid());
        snprintf(text, sizeof text, "%ld %ld %ld\n", secret, *shared, *mshared);
        put(name, text);
    }
}

static pid_t spawn(void (*body)(void))
{
    pid_t p = fork();
    if (p == 0) { secret = (long)getpid() * 7; body(); serve(0); }
    return p;
}

static void leaf(void) {}
static void own_group(void) { setpgid(0, 0); }
static void a1(void) { setpgid(0, 0); spawn(leaf); }
static void a(void) { setsid(); spawn(a1); spawn(leaf); }
static pid_t b1pid;
static void b2(void) { setpgid(0, b1pid); }
static void b(void)
{
    b1pid = spawn(own_group);
    pid_t p = spawn(b2);
    setpgid(p, b1pid);
}

int main(int argc, char **argv)
{
    dir = argv[1];
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = on_usr2; sigaction(SIGUSR2, &sa, 0);
    shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    *shared = 40;
    int mfd = memfd_create("crpy-tree", 0);
    ftruncate(mfd, 4096);
    mshared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    close(mfd);
    *mshared = 100;
    secret = (long)getpid() * 7;
    spawn(a);
    spawn(b);
    if (fork() == 0) _exit(7);
    if (fork() == 0) { signal(SIGTERM, SIG_DFL); raise(SIGTERM); _exit(1); }
    usleep(200000);
    put("ready", "ready\n");
    serve(1);
}
"""


@pytest.fixture(scope="module")
def tree_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("bin"), "tree", TREE_C, "-O1")


@pytest.fixture
def subreaper():
    """Orphans of the tree (crpy restore -d exits) become our children, so we can reap them."""
    procs.set_subreaper()
    yield
    procs.set_subreaper(False)
    procs.reap_strays()


def reap_gone(pids, timeout=10):
    """Reap the killed tree's tasks (they are ours, as subreaper) until no pid is left."""
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        assert time.monotonic() < deadline, "the tree was not killed"
        procs.reap_strays()
        time.sleep(0.01)


def start_tree(binary, workdir):
    return start_target([binary, workdir], (workdir / "ready").exists, "the tree to get ready", 10,
                        cwd=str(workdir))


def start_c(tmp_path, name, source, ready, *flags, timeout=10):
    """Build a test's own C program and start it with the path of its ready file (which it
    writes once its tree is set up) as its argument; back when that file exists."""
    exe = build_c(tmp_path, name, source, *flags)
    return start_target([exe, ready], ready.exists, f"{name} to get ready", timeout)


def dump_tree(p, pids, imgs):
    """`crpy dump` of the tree under p (its tasks: pids); then all of them are gone and reaped."""
    r = crpy("dump", "-t", p.pid, "-D", imgs)
    assert r.returncode == 0, r.stderr
    p.wait()
    reap_gone(pids)


def restore_tree(imgs):
    r = crpy("restore", "-d", "-D", imgs)
    assert r.returncode == 0, r.stderr


def snapshot(root):
    """pid -> (ppid, pgid, sid, state letter) of every task of the tree under root."""
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        st = proc.stat(pid)
        out[pid] = (st.ppid, st.pgrp, st.session, st.state)
        if st.state != "Z":
            todo += proc.children(pid)
    return out


def kill_tree(pids):
    """SIGKILL every task of the tree, then reap them all (they are ours, as subreaper)."""
    for pid in pids:
        kill_quietly(pid)
    reap_gone(pids)


def settled(root, tasks):
    """snapshot(root) once it holds `tasks` tasks, each asleep in pause(), stopped or a zombie.
    The targets write "ready" after a fixed usleep() for their children to set up, which a
    loaded machine outruns: a task not forked yet, a zombie still exiting, a task still on its
    way into pause() (its state R, not the S of every later snapshot)."""
    def steady():
        try:
            snap = snapshot(root)
        except NoSuchProcess:          # a task exiting while we walked (one of the zombies to be)
            return None
        asleep = all(v[3] in "TZ" or (v[3] == "S" and sleeps_in(pid, NR_PAUSE)) for pid, v in snap.items())
        return snap if len(snap) == tasks and asleep else None
    return wait_for(steady, what=f"the tree under {root}: {tasks} tasks, each in pause(), stopped or a zombie")


@contextlib.contextmanager
def tree_of(p, tasks):
    """The tree under p (`tasks` tasks) once settled; on the way out, whatever happened, every
    task of it is killed and reaped, p too."""
    try:
        before = settled(p.pid, tasks)
    except BaseException:
        try:
            kill_tree(snapshot(p.pid))
        except NoSuchProcess:
            kill_tree([p.pid])
        p.wait()
        raise
    try:
        yield before
    finally:
        kill_tree(before)
        p.wait()


def in_pause(pids):
    """Wait until every task of pids sleeps in pause(): these targets look at the flag their
    handler sets only when pause() returns, so a signal that comes before they (re-)enter it (just
    started, just restored, just back from the last one) is a wakeup they never see."""
    wait_for(lambda: all(sleeps_in(pid, NR_PAUSE) for pid in pids), what=f"{list(pids)} to sleep in pause()")


def voluntary_switches(pid):
    lines = read_text(f"/proc/{pid}/status").splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith("voluntary_ctxt_switches:")))


def wait_file(path, timeout=10):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)
    return path.read_text()


def test_tree_dump_and_restore(tree_bin, tmp_path, subreaper):
    work = tmp_path / "work"
    work.mkdir()
    p = start_tree(tree_bin, work)
    with tree_of(p, 10) as before:
        assert len({v[2] for v in before.values()}) == 2, "two sessions"
        zombies = {pid for pid, v in before.items() if v[3] == "Z"}
        assert len(zombies) == 2
        dump_tree(p, before, tmp_path / "imgs")
        exit_codes = _check_images(tmp_path / "imgs", p.pid, before, zombies)
        restore_tree(tmp_path / "imgs")
        in_pause([pid for pid in before if pid not in zombies])
        after = snapshot(p.pid)
        assert set(after) == set(before)
        for pid, (ppid, pgid, sid, state) in before.items():
            want_ppid = os.getpid() if pid == p.pid else ppid
            assert after[pid] == (want_ppid, pgid, sid, "Z" if pid in zombies else "S"), pid
        assert {proc.stat(pid).comm for pid in zombies} == {"tree"}, "zombies keep their name"
        _check_running(work, p.pid, before, exit_codes)


def _check_images(imgs, root, before, zombies):
    tree = framing.read_image(framing.image_path(str(imgs), "pstree"), "pstree")
    assert tree[0].pid == root and tree[0].ppid == 0
    got = {e.pid: (e.ppid, e.pgid, e.sid) for e in tree}
    want = {pid: (0 if pid == root else v[0], v[1], v[2]) for pid, v in before.items()}
    assert got == want
    codes = {}
    for pid in zombies:
        core = framing.read_image(framing.image_path(str(imgs), "core", pid), "core")[0]
        assert core.tc.task_state == 2 and not core.HasField("thread_info")
        codes[pid] = core.tc.exit_code
    assert set(codes.values()) == {7 << 8, signal.SIGTERM}
    return codes            # which zombie is which: pids may wrap, so the first forked is not the lowest


def _check_running(work, root, before, exit_codes):
    live = [pid for pid in before if pid not in exit_codes]
    a_child = next(pid for pid in live if pid != root)
    in_pause(live)
    switches = voluntary_switches(a_child)
    os.kill(a_child, signal.SIGUSR2)                     # one task bumps the shared counter
    # bumped once it sleeps again: it bumps as its pause() returns, before the next one
    wait_for(lambda: voluntary_switches(a_child) > switches and sleeps_in(a_child, NR_PAUSE),
             what="the bump of the shared counter")
    for pid in live:
        os.kill(pid, signal.SIGUSR1)
    for pid in live:
        secret, shared, mshared = wait_file(work / f"alive-{pid}").split()
        assert int(secret) == pid * 7, "private memory of each task"
        assert int(shared) == 41, f"pid {pid} does not see the shared counter another task bumped"
        assert int(mshared) == 101, f"pid {pid} does not see the memfd another task wrote"
    reaped = dict(line.split() for line in wait_file(work / "reaped").splitlines())
    assert {int(k): int(v, 16) for k, v in reaped.items()} == exit_codes


def test_taken_pids_fail_cleanly(tree_bin, tmp_path, subreaper):
    work = tmp_path / "work"
    work.mkdir()
    p = start_tree(tree_bin, work)
    with tree_of(p, 10) as before:
        r = crpy("dump", "-t", p.pid, "-D", tmp_path / "imgs", "--leave-running")
        assert r.returncode == 0, r.stderr
        in_pause([pid for pid, v in before.items() if v[3] == "S"])   # detached, each runs back into pause()
        assert snapshot(p.pid) == before, "--leave-running leaves the tree as it was"
        kids = set(proc.children(os.getpid()))
        r = crpy("restore", "-d", "-D", tmp_path / "imgs")
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"pid {p.pid} is taken" in r.stderr
        assert snapshot(p.pid) == before and set(proc.children(os.getpid())) <= kids, "nothing left"


STOP_C = r"""
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
static void nap(void) { for (;;) pause(); }
int main(int argc, char **argv)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (fork() == 0) { if (fork() == 0) nap(); nap(); }       /* child with a grandchild */
    if (fork() == 0) { raise(SIGSTOP); nap(); }               /* stopped child */
    usleep(200000);
    FILE *f = fopen(argv[1], "w"); fputs("ready\n", f); fclose(f);
    nap();
}
"""


def test_a_failure_in_one_task_kills_the_whole_tree(tree_bin, tmp_path, subreaper):
    work = tmp_path / "work"
    work.mkdir()
    p = start_tree(tree_bin, work)
    with tree_of(p, 10) as before:
        dump_tree(p, before, tmp_path / "imgs")
        for step in ("close-fds", "sigreturn"):              # every task fails after the go
            r = crpy("restore", "-d", "-D", tmp_path / "imgs", env=dict(os.environ, CRPY_FAULT=f"restorer:{step}"))
            assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert f"restorer step {step}" in r.stderr
            reap_gone(before)                                # all of them, killed and reaped
        # one leaf dies by a signal in its restorer without a word: its report fd closes all the
        # same, and only its missing "run PID" tells
        leaf = max(pid for pid, v in before.items() if pid != p.pid and v[3] != "Z" and
                   not any(w[0] == pid for w in before.values()))
        r = crpy("restore", "-d", "-D", tmp_path / "imgs",
                 env=dict(os.environ, CRPY_FAULT=f"restorer:mm-map:kill@{leaf}"))
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"pid {leaf} died in its restorer after the go" in r.stderr, r.stderr
        reap_gone(before)
        restore_tree(tmp_path / "imgs")
        assert set(snapshot(p.pid)) == set(before), "nothing left behind: the same tree comes back"


def test_stopped_task_and_subreaper(tmp_path, subreaper):
    work = tmp_path / "work"
    work.mkdir()
    p = start_c(tmp_path, "stop", STOP_C, work / "ready", "-O1")
    with tree_of(p, 4) as before:
        stopped = [pid for pid, v in before.items() if v[3] == "T"]
        middle = next(pid for pid, v in before.items() if v[0] == p.pid and proc.children(pid))
        assert len(stopped) == 1
        dump_tree(p, before, tmp_path / "imgs")
        restore_tree(tmp_path / "imgs")
        # the restored task stops itself at the very end of its restore, maybe after crpy returned
        wait_for(lambda: proc.stat(stopped[0]).state == "T", what="the task restored stopped")
        os.kill(stopped[0], signal.SIGCONT)
        deadline = time.monotonic() + 5
        while proc.stat(stopped[0]).state != "S":
            assert time.monotonic() < deadline, "SIGCONT did not wake the stopped task"
            time.sleep(0.01)
        grandchild = proc.children(middle)[0]
        os.kill(middle, signal.SIGKILL)                       # its orphan goes to the subreaper root
        deadline = time.monotonic() + 5
        while proc.stat(grandchild).ppid != p.pid:
            assert time.monotonic() < deadline, "the root lost its child-subreaper flag"
            time.sleep(0.01)


COW_C = r"""
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#define SIZE (64 << 20)
static volatile sig_atomic_t report;
static void on_usr1(int s) { (void)s; report = 1; }
int main(int argc, char **argv)
{
    unsigned char *m = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < SIZE; i++) m[i] = (unsigned char)(i * 7 + i / 4096);
    signal(SIGUSR1, on_usr1);
    pid_t kid = fork();
    if (kid == 0) { m[10 * 4096] = 0x55; madvise(m + 20 * 4096, 4096, MADV_DONTNEED); }
    else { usleep(100000); FILE *f = fopen(argv[1], "w"); fputs("ready\n", f); fclose(f); }
    for (;;) {
        pause();
        if (!report) continue;
        report = 0;
        unsigned long sum = 0;
        for (long i = 0; i < SIZE; i++) sum = sum * 31 + m[i];
        char path[256], tmp[264];                   /* renamed in place: never read half-written */
        snprintf(path, sizeof path, "%s.%d", argv[1], getpid());
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w"); fprintf(f, "%lu\n", sum); fclose(f);
        rename(tmp, path);
    }
}
"""


def _pss_anon_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss_Anon:"))


def _sums(work, pids):
    in_pause(pids)
    for pid in pids:
        out = work / f"ready.{pid}"
        if out.exists():
            out.unlink()
        os.kill(pid, signal.SIGUSR1)
    return {pid: int(wait_file(work / f"ready.{pid}", 20)) for pid in pids}


def test_cow_pages_shared_in_images_and_memory(tmp_path, subreaper):
    work = tmp_path / "work"
    work.mkdir()
    p = start_c(tmp_path, "cow", COW_C, work / "ready", "-O2", timeout=20)
    pids = [p.pid] + proc.children(p.pid)
    try:
        sums = _sums(work, pids)
        assert sums[pids[0]] != sums[pids[1]], "the child changed a page and dropped another"
        pss_before = sum(_pss_anon_kib(pid) for pid in pids)
        dump_tree(p, pids, tmp_path / "imgs")
        sizes = {pid: _pages_bytes(tmp_path / "imgs", pid) for pid in pids}
        assert sizes[pids[0]] > 64 << 20, sizes
        assert sizes[pids[1]] < 4 << 20, f"the child's images hold the parent's pages again: {sizes}"
        restore_tree(tmp_path / "imgs")
        pss_after = sum(_pss_anon_kib(pid) for pid in pids)
        assert pss_after < pss_before + (8 << 10), (pss_before, pss_after)
        assert _sums(work, pids) == sums, "every page as it was, in both tasks"
    finally:
        kill_tree(pids)


def _pages_bytes(imgs, pid):
    entries = framing.read_image(framing.image_path(str(imgs), "pagemap", pid), "pagemap")
    return sum(framing.pagemap_nr_pages(e) * 4096 for e in entries[1:] if e.flags & 4)


SOCKET_KID_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (fork() == 0) {
        if (fork() == 0) {      /* a UDP-Lite socket with a datagram queued: refused (crpy.resources.inet_udp) */
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            socklen_t len = sizeof(a);
            int s = socket(AF_INET, SOCK_DGRAM, 136 /* IPPROTO_UDPLITE */);
            bind(s, (struct sockaddr *)&a, len);
            getsockname(s, (struct sockaddr *)&a, &len);
            sendto(s, "x", 1, 0, (struct sockaddr *)&a, len);
            for (;;) pause();
        }
        for (;;) pause();
    }
    usleep(200000);
    FILE *f = fopen(argv[1], "w"); fputs("ready\n", f); fclose(f);
    for (;;) pause();
}
"""


def test_an_unsupported_grandchild_leaves_the_whole_tree_untouched(tmp_path, subreaper):
    p = start_c(tmp_path, "sock", SOCKET_KID_C, tmp_path / "ready", "-O1")
    with tree_of(p, 3) as before:
        maps = {pid: proc.maps(pid, vmflags=False) for pid in before}
        r = crpy("dump", "-t", p.pid, "-D", tmp_path / "imgs")
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "UDP-Lite socket" in r.stderr
        in_pause(list(before))                # detached, each goes back into its pause()
        assert snapshot(p.pid) == before
        for pid in before:
            st = proc.status(pid)
            assert st.state == "S" and st.tracer_pid == 0, f"pid {pid} left stopped or traced"
            assert proc.maps(pid, vmflags=False) == maps[pid], f"pid {pid} keeps a parasite mapping"


DAEMON_C = r"""
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t p = fork();
    if (p == 0) {                                   /* the classic daemon: setsid, fork, exit */
        setsid();
        if (fork() == 0) for (;;) pause();
        _exit(0);
    }
    waitpid(p, 0, 0);
    usleep(200000);                                 /* the daemon is ours now (subreaper) */
    FILE *f = fopen(argv[1], "w"); fputs("ready\n", f); fclose(f);
    for (;;) pause();
}
"""


def test_a_daemon_whose_session_leader_is_gone(tmp_path, subreaper):
    p = start_c(tmp_path, "daemon", DAEMON_C, tmp_path / "ready", "-O1")
    with tree_of(p, 2) as before:
        daemon = next(pid for pid in before if pid != p.pid)
        ppid, pgid, sid, _ = before[daemon]
        assert ppid == p.pid and sid == pgid and sid not in before, before
        dump_tree(p, before, tmp_path / "imgs")
        restore_tree(tmp_path / "imgs")
        in_pause(list(before))                # crpy may return before they are back in pause()
        after = snapshot(p.pid)
        assert after[daemon] == before[daemon], "its own session and group back, its parent too"
        wait_for(lambda: not os.path.exists(f"/proc/{sid}"), timeout=10, what="the session helper to be gone")
