"""zdtm tests through pre-dump chains: `python3 -m tests.zdtm.run NAME --pre N` runs N crpy
pre-dump rounds while the test runs, then a dump of only what changed since the last round
(--prev-images-dir --track-mem), and restores through the chain; the test checks its state.
Tests whose memory changes between rounds, grows, moves or spans threads and trees, or that hold
fds a pre-dump leaves to the final dump."""

import pytest

from tests.zdtm.cases import expect_detected, expect_pass, zdtm_tests

PRE_DUMP_TESTS = ["dirtymem", "precopy_writer", "mem256", "maps", "brk", "stack", "guard", "filemap_private", "shmem",
                  "threads_fpu", "tree50",
                  "tree5",           # fds of every kind a pre-dump must not refuse (a lock, a socket pair, ghosts)
                  "pty_ctty",        # a pty and controlling terminal of the tree (was refused: master "outside")
                  "unix_listen",     # a listening socket (a pre-dump round crashed on its SO_PEERCRED check)
                  "predump_unpriv",  # no capability: a UFFD_USER_MODE_ONLY userfaultfd, writes by the kernel
                  "filemap_zap"]     # zapped pages of a tracked private file mapping


@pytest.mark.parametrize("rounds", [1, 3])
@zdtm_tests(PRE_DUMP_TESTS)
def test_pre_dump_rounds(name, rounds):
    expect_pass(name, "--pre", str(rounds))


def test_pre_dump_rounds_catch_a_broken_state():
    """With --break the test reports FAIL after the chain's restore too (its check can fail)."""
    expect_detected("dirtymem", "--pre", "2")


@pytest.mark.parametrize("mode, rounds, iters", [("splice", "1", "20"), ("read", "2", "5")])
def test_pre_dump_loses_no_write_of_a_busy_writer(mode, rounds, iters):
    """Pre-dump copies after the tree resumed, in both --pre-dump-mode's: a task writing all the
    time through pre-dump+dump cycles (20 of them with splice) never comes back with a page older
    than its last write.  This failed with the PAGEMAP_SCAN walk_end bug (crpy.kernel.pagemap)."""
    expect_pass("precopy_writer", "--pre", rounds, "--iters", iters, "--pre-mode", mode)



# dump_fails tests (tests/zdtm/desc.py) after 2 pre-dump rounds: the rounds look at memory only
# and pass, then the final dump refuses in one line, the task as it was before the first round
# (the tracking dropped).  Before pre-dumps skipped fds, the first round refused them instead.
REFUSED_BY_THE_DUMP = ["unsupported_fd", "unix_peer_outside", "ghost_limit", "fown_outside", "epoll_outside"]
# ... and what a pre-dump round itself refuses, like the dump: memory it cannot track or copy
REFUSED_BY_A_ROUND = ["refused_userfaultfd", "refused_aio"]


@zdtm_tests(REFUSED_BY_THE_DUMP + REFUSED_BY_A_ROUND)
def test_pre_dump_rounds_then_refused(name, monkeypatch):
    from tests.zdtm import harness

    refusals, must_fail = [], harness.dump_must_fail

    def noting_the_refusal(*args, **kwargs):
        refusals.append(must_fail(*args, **kwargs))
        return refusals[-1]

    monkeypatch.setattr(harness, "dump_must_fail", noting_the_refusal)
    result = harness.run_one(name, pre=2)
    if result.skipped:
        pytest.skip(result.reason)
    assert result.passed, result.reason
    by_round = refusals[0].startswith("pre-dump 1: ")
    assert by_round == (name in REFUSED_BY_A_ROUND), refusals
