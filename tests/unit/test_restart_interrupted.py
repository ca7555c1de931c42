"""A signal that is pending and caught when a restored task comes back ends the syscall the
task slept in, as the kernel would have ended it (pause() returns -1 EINTR), instead of the
handler running and the syscall sleeping again (crpy.restore.sigframe.restart_fixup).  The
pending SIGUSR1 is put into the images (a signal that came during the dump); the target says
whether its pause() came back by it.  The rules themselves: restart_fixup, handler_at_return and
restart_masks (what the restorer checks at the very end: zdtm stopped_tstp shows it end to end).
"""

import os
import struct

import pytest

from crpy.restore import sigframe as sf
from tests.unit.crhelpers import SelfCheckingTarget, build_c, read_text, wait_for

PAUSE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, term;
static void on_usr1(int s) { (void)s; usr1 = 1; }
static void on_term(int s) { (void)s; term = 1; }

int main(int argc, char **argv)
{
	struct sigaction sa;
	FILE *out = fopen(argv[1], "w");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;                 /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	fprintf(out, "ready\n");
	fflush(out);
	int r = pause(), e = errno, by_term = term;
	fprintf(out, "pause returned %d errno %d usr1 %d term %d\n", r, e, usr1, by_term);
	fflush(out);
	while (!term)
		pause();
	fprintf(out, r == -1 && e == EINTR && usr1 && !by_term ? "PASS\n" : "FAIL\n");
	fclose(out);
	return 0;
}
"""

SIGUSR1, SI_USER = 10, 0


@pytest.fixture(scope="module")
def pause_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("pause"), "pause_target", PAUSE_C)


def _add_pending(images, pid, sig):
    """A kill()ed `sig` in the task's shared queue of its image, as if it came during the dump."""
    from crpy.images import digest, framing

    path = framing.image_path(str(images), "core", pid)
    core = framing.read_image(path, "core")[0]
    info = struct.pack("<iiiiI", sig, 0, SI_USER, os.getpid(), 0).ljust(128, b"\0")
    core.tc.signals_s.signals.add(siginfo=info)
    framing.write_image(path, "core", [core])
    digest.write_digests(str(images))     # an intact dump that only holds one more signal


def test_caught_pending_signal_ends_the_sleep_with_eintr(pause_bin, tmp_path):
    with SelfCheckingTarget(pause_bin, tmp_path) as t:
        t.dump()
        _add_pending(t.images, t.pid, SIGUSR1)
        t.restore()
        wait_for(lambda: "pause returned" in read_text(t.out), timeout=10,
                 what="pause() to come back by the pending SIGUSR1 (it slept on instead)")
        t.verdict()


def test_restorer_patches_rax_and_rip_where_the_frame_has_them():
    from crpy.kernel._sys import lib

    assert lib.RST_FRAME_RAX_OFF == sf.MCONTEXT_OFF + 8 * sf._GPR_ORDER.index("rax")
    assert lib.RST_FRAME_RIP_OFF == sf.MCONTEXT_OFF + 8 * sf._GPR_ORDER.index("rip")


def test_restart_masks_say_which_handlers_end_the_syscall():
    acts = [(0, 0, 0, 0)] * 64
    acts[10 - 1] = (0x4000, 0, 0, 0)                      # SIGUSR1: a handler
    acts[18 - 1] = (0x4000, sf.SA_RESTART, 0, 0)          # SIGCONT: a handler with SA_RESTART
    regs = _regs(-sf.ERESTARTSYS)
    assert sf.restart_masks(regs, sf.restart_fixup(regs), 0, acts) == (0x1002, 1 << 9 | 1 << 17, 1 << 9)
    assert sf.restart_masks(regs, sf.restart_fixup(regs), 1 << 9, acts) == (0x1002, 1 << 17, 0)
    regs = _regs(-sf.ERESTARTNOHAND)
    assert sf.restart_masks(regs, sf.restart_fixup(regs), 0, acts)[2] == 1 << 9 | 1 << 17
    regs = _regs(0)                                       # not in a syscall to re-enter
    assert sf.restart_masks(regs, sf.restart_fixup(regs), 0, acts) == (0, 0, 0)


def _regs(rax, orig_rax=34, rip=0x1002):
    return {"rax": rax & (1 << 64) - 1, "orig_rax": orig_rax, "rip": rip}


@pytest.mark.parametrize("err, flags, intr", [
    (sf.ERESTARTNOHAND, 0, True), (sf.ERESTARTNOHAND, sf.SA_RESTART, True),
    (sf.ERESTART_RESTARTBLOCK, 0, True), (sf.ERESTARTSYS, 0, True),
    (sf.ERESTARTSYS, sf.SA_RESTART, False), (sf.ERESTARTNOINTR, 0, False)])
def test_restart_fixup_with_a_handler(err, flags, intr):
    fixed = sf.restart_fixup(_regs(-err), handler_flags=flags)
    if intr:
        assert fixed["rax"] == -sf.EINTR & (1 << 64) - 1 and fixed["rip"] == 0x1002
    else:
        assert fixed["rax"] == 34 and fixed["rip"] == 0x1000


def test_handler_at_return_takes_the_first_signal_delivered():
    acts = [(0, 0, 0, 0)] * 64
    acts[10 - 1] = (0x4000, 0x4000000, 0, 0)              # SIGUSR1: a handler
    acts[12 - 1] = (0x4000, 0x14000000, 0, 0)             # SIGUSR2: a handler with SA_RESTART
    acts[14 - 1] = (1, 0, 0, 0)                           # SIGALRM ignored
    assert sf.handler_at_return([], 0, acts) is None
    assert sf.handler_at_return([17, 14], 0, acts) is None             # default-ignored, ignored
    assert sf.handler_at_return([12, 10], 0, acts) == 0x4000000        # lowest first
    assert sf.handler_at_return([12, 10], 1 << 9, acts) == 0x14000000  # SIGUSR1 blocked
    assert sf.handler_at_return([15], 0, acts) is None                 # default: fatal
