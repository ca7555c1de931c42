"""What crpy.dump.target refuses before it seizes a task, on real processes: a task blocked in
vfork() (the glibc call and clone3 with CLONE_VFORK, as posix_spawn makes it), its vfork child
that shares its memory, a task in a namespace of its own.  `crpy dump` of each fails at once
with one line, and the task runs on."""

import os
import subprocess

import pytest

from crpy.dump import target
from crpy.errors import UnsupportedResource
from tests.unit.crhelpers import build_c, crpy, kill_quietly, wait_for

VFORK = r"""
#define _GNU_SOURCE
#include <linux/sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv[1] "vfork": glibc vfork(); "clone3": clone3(CLONE_VM|CLONE_VFORK) on a stack of its own.
 * The child sleeps without exec'ing: the parent stays blocked. */
static char stack[65536] __attribute__((aligned(16)));
int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "clone3")) {
        struct clone_args ca;
        memset(&ca, 0, sizeof(ca));
        ca.flags = CLONE_VM | CLONE_VFORK;
        ca.exit_signal = 17;
        ca.stack = (uint64_t)(uintptr_t)stack;
        ca.stack_size = sizeof(stack);
        long r;
        /* raw: the child starts on the empty stack, where no C function may return */
        asm volatile("syscall" : "=a"(r) : "a"(SYS_clone3), "D"(&ca), "S"(sizeof(ca)) : "rcx", "r11", "memory");
        if (r == 0)
            for (;;)
                asm volatile("syscall" :: "a"(SYS_pause) : "rcx", "r11", "memory");
        return 0;
    }
    if (vfork() == 0)
        for (;;)
            syscall(SYS_pause);
    return 0;
}
"""


def _child_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except FileNotFoundError:
        return None
    return int(kids[0]) if kids else None


@pytest.fixture
def vforker(tmp_path, request):
    exe = build_c(tmp_path, "vforker", VFORK)
    p = subprocess.Popen([exe, request.param], start_new_session=True)
    try:
        kid = wait_for(lambda: _child_of(p.pid), what="the vfork child")
        wait_for(lambda: open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "D",
                 what="the parent blocked in vfork")
        yield p.pid, kid
    finally:
        kill_quietly(p.pid)
        if "kid" in locals():
            kill_quietly(kid)
        p.wait()


@pytest.mark.parametrize("vforker", ["vfork", "clone3"], indirect=True)
def test_parent_in_vfork_is_refused_at_once(vforker, tmp_path):
    parent, _ = vforker
    with pytest.raises(UnsupportedResource, match="vfork"):
        target.check_before_seize(parent)
    r = crpy("dump", "-t", parent, "-D", tmp_path / "img", timeout=20)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and f"pid {parent}" in lines[0] and "vfork" in lines[0], r.stderr
    assert "T" not in open(f"/proc/{parent}/stat").read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("vforker", ["vfork"], indirect=True)
def test_vfork_child_sharing_memory_is_refused(vforker, tmp_path):
    parent, kid = vforker
    with pytest.raises(UnsupportedResource, match="address space shared with its parent"):
        target.check_before_seize(kid)
    r = crpy("dump", "-t", kid, "-D", tmp_path / "img", timeout=20)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert os.path.exists(f"/proc/{kid}") and os.path.exists(f"/proc/{parent}")


def test_task_in_own_namespace_is_refused():
    p = subprocess.Popen(["unshare", "--ipc", "sleep", "60"], start_new_session=True)
    try:
        wait_for(lambda: os.stat(f"/proc/{p.pid}/ns/ipc").st_ino != os.stat("/proc/self/ns/ipc").st_ino
                 and os.readlink(f"/proc/{p.pid}/exe").endswith("sleep"), what="sleep in its ipc namespace")
        with pytest.raises(UnsupportedResource, match=r"ipc namespace ipc:\["):
            target.check_before_seize(p.pid)
    finally:
        kill_quietly(p.pid)
        p.wait()
