"""The leaves of a restored tree run no Python after their fork: their parent compiles their
whole restore for C (crpy.restore.leaf), and the first of them, rid of crpy's interpreter,
forks the others as its siblings.  A real tree of leaves, each with private memory of its own,
a file all of them share (one open description) and a cwd of their own, is dumped and
restored; the log says which tasks ran compiled, every leaf is the root's child, and each then
checks its memory and writes through the shared fd.  A damaged pages image of one leaf, and a
leaf step that fails (its cwd gone), fail the restore in one line naming what, with no task
left."""

import os
import signal

import pytest

from tests.unit.crhelpers import crpy, wait_for
from tests.unit.test_tree import dump_tree, kill_tree, start_c, subreaper  # noqa: F401 (a fixture)
from tests.zdtm.test_faults import assert_tree_gone
from tests.zdtm.test_sacred import assert_one_error_line

LEAVES = 12                        # above crpy.restore.leaf.SPAWN_MIN: the first forks the others
LEAVES_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1 << 20)
static volatile sig_atomic_t report;
static void on_usr1(int s) { (void)s; report = 1; }

int main(int argc, char **argv)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    int log = open("shared.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);    /* fd 3 of every task */
    for (int i = 0; i < LEAVES; i++) {
        if (fork())
            continue;
        if (chdir("sub"))
            return 1;
        unsigned char *mem = malloc(MIB);
        unsigned seed = getpid();
        for (int k = 0; k < MIB; k++)
            mem[k] = (unsigned char)(seed * 31 + k * 7);
        for (;;) {
            pause();
            if (!report)
                continue;
            report = 0;
            int bad = 0;
            for (int k = 0; k < MIB; k++)
                bad += mem[k] != (unsigned char)(seed * 31 + k * 7);
            char line[64], name[64];
            int n = snprintf(line, sizeof line, "%d %s\n", getpid(), bad ? "damaged" : "intact");
            write(log, line, n);
            snprintf(name, sizeof name, "alive-%d", getpid());
            FILE *f = fopen(name, "w");
            fputs(line, f);
            fclose(f);
        }
    }
    FILE *f = fopen(argv[1], "w");
    fclose(f);
    for (;;)
        pause();
}
""".replace("LEAVES", str(LEAVES))


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


@pytest.fixture
def dumped(tmp_path, subreaper):  # noqa: F811 (the fixture)
    """(root pid, leaf pids, images dir, work dir) of a dumped tree of LEAVES leaves, all gone."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    os.chdir(work)
    try:
        p = start_c(tmp_path, "leaves", LEAVES_C, work / "ready")
    finally:
        os.chdir(tmp_path)
    leaves = wait_for(lambda: len(_children(p.pid)) == LEAVES and _children(p.pid), what="the leaves")
    imgs = tmp_path / "imgs"
    dump_tree(p, [p.pid] + leaves, imgs)
    yield p.pid, leaves, imgs, work
    kill_tree([p.pid] + leaves)


def test_leaves_restored_without_python(dumped):
    root, leaves, imgs, work = dumped
    r = crpy("restore", "-d", "-D", imgs, "-v4", "-o", "restore.log")
    assert r.returncode == 0, r.stderr
    log = (imgs / "restore.log").read_text()
    for pid in leaves:
        assert f"pid {pid}: its restore compiled for C" in log, f"leaf {pid} ran Python:\n{log[-3000:]}"
        assert f"child {pid} running" not in log
    assert f"child {root} running" in log              # the root has children: Python
    assert "the forker leaf unmaps" in log, "no leaf forked its siblings"
    assert sorted(_children(root)) == sorted(leaves)
    for pid in leaves:
        assert os.readlink(f"/proc/{pid}/cwd") == str(work / "sub")
        assert os.readlink(f"/proc/{pid}/fd/3") == str(work / "shared.log")
        wait_for(lambda: "pause" in open(f"/proc/{pid}/wchan").read() or
                 open(f"/proc/{pid}/syscall").read().split()[0] == "34", what=f"{pid} in pause()")
        os.kill(pid, signal.SIGUSR1)
    for pid in leaves:
        alive = work / "sub" / f"alive-{pid}"
        assert wait_for(lambda: alive.exists() and alive.read_text(),
                        what=f"leaf {pid} to report") == f"{pid} intact\n"
    lines = sorted((work / "shared.log").read_text().splitlines())
    assert lines == sorted(f"{pid} intact" for pid in leaves), "the shared fd lost a write (offset not shared?)"


def test_siblings_images_made_once_each_task_its_own(dumped, monkeypatch):
    """The leaves' mm images are byte-identical: the load makes their areas, state, sigactions
    and XSAVE area once (crpy.restore.load.FilesById), yet each task gets objects of its own,
    equal to what a load without that memo makes."""
    from crpy.restore import load, tree

    _, leaves, imgs, _ = dumped
    mms = {(imgs / f"mm-{pid}.img").read_bytes() for pid in leaves}
    assert len(mms) == 1, "the leaves' mm images differ: nothing here to make once"
    nodes = {n.pid: n.task for n in tree.load_tree(imgs)}
    first, second = nodes[leaves[0]], nodes[leaves[1]]
    for name in ("areas", "mm", "auxv", "regs", "sigactions", "state"):
        assert getattr(first, name) is not getattr(second, name), name
    assert not {id(a) for a in first.areas} & {id(a) for a in second.areas}
    assert first.areas[0].runs is not second.areas[0].runs
    assert first.state.pending is not second.state.pending
    made = load.FilesById.__init__

    def without_memo(self):
        made(self)
        self.mms = self.xsaves = self.states = self.sigactions = None

    monkeypatch.setattr(load.FilesById, "__init__", without_memo)
    plain = {n.pid: n.task for n in tree.load_tree(imgs)}
    assert all(repr(plain[pid]) == repr(nodes[pid]) for pid in nodes)


def _pages_image(imgs, pid):
    """The pages image of task pid (its pagemap's head names it)."""
    from crpy.images import framing

    pagemap = framing.read_image(framing.image_path(imgs, "pagemap", pid), "pagemap")
    return imgs / f"pages-{pagemap[0].pages_id}.img"


def test_leaf_damaged_pages_refused(dumped):
    root, leaves, imgs, _ = dumped
    pages = _pages_image(imgs, leaves[2])
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0x40                     # inside the leaf's 1 MiB, which it checks
    pages.write_bytes(bytes(data))
    r = crpy("restore", "-d", "-D", imgs)
    assert_one_error_line(r.returncode, r.stderr)
    assert pages.name in r.stderr and "differ from the dump" in r.stderr, r.stderr
    assert_tree_gone([root] + leaves, "after the damaged restore")


def test_leaf_failing_step_is_one_line(dumped):
    """The leaves' cwd gone after the dump: their compiled chdir fails (load does not look)."""
    root, leaves, imgs, work = dumped
    os.rmdir(work / "sub")
    r = crpy("restore", "-d", "-D", imgs)
    assert_one_error_line(r.returncode, r.stderr)
    assert f"cwd {work / 'sub'} of pid" in r.stderr and "ENOENT" in r.stderr, r.stderr
    assert_tree_gone([root] + leaves, "after a leaf's chdir failed")
