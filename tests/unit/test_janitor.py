"""The janitors (crpy.janitor, crpy.resources.ghost_janitor): what a SIGKILLed crpy made goes,
whatever instant the kill falls on, and nothing that was not crpy's goes with it."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from crpy.resources import ghost_janitor
from tests.unit.crhelpers import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _janitor_done(directory, expected):
    wait_for(lambda: sorted(os.listdir(directory)) == expected, timeout=10,
             what=f"{directory} to hold {expected} (it holds {sorted(os.listdir(directory))})")


# A crpy stand-in making names (files, then directories under them) as fast as it can.
_MAKER = """
    import os, sys
    from crpy.resources import ghost_janitor
    top = sys.argv[1]
    ghost_janitor.ready()
    print("ready", flush=True)
    i = 0
    while True:
        d = ghost_janitor.make_named([f"{top}/d{i}"], lambda p: os.mkdir(p, 0o700), is_dir=True)
        ghost_janitor.make_named([f"{d}/f", f"{d}/g"], lambda p: open(p, "x").close())
        i += 1
"""


@pytest.mark.parametrize("round_", range(12))
def test_a_kill_at_any_instant_leaves_no_name(tmp_path, round_):
    """The maker is SIGKILLed at a random instant: every name it made, temporary ones too, goes."""
    proc = _python(_MAKER, str(tmp_path))
    assert proc.stdout.readline() == b"ready\n", proc.stderr.read().decode()
    time.sleep(random.uniform(0.005, 0.08))
    proc.kill()
    proc.wait()
    _janitor_done(tmp_path, [])


def test_a_name_that_is_another_inode_by_then_stays(tmp_path):
    """A name announced with its inode is removed only while it is that inode: a kill before a
    rename into place cannot take somebody else's file of the same name."""
    mine, theirs, plain = tmp_path / "mine", tmp_path / "theirs", tmp_path / "plain"
    for p in (mine, theirs, plain):
        p.write_text(p.name)
    proc = _python("""
        import os, sys
        from crpy.resources import ghost_janitor
        mine, theirs, plain = sys.argv[1:]
        ghost_janitor.made(mine, st=os.lstat(mine))
        ghost_janitor.made(theirs, st=os.lstat(mine))     # announced, but never made here
        ghost_janitor.made(plain)
        os.kill(os.getpid(), 9)
    """, str(mine), str(theirs), str(plain))
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    _janitor_done(tmp_path, ["theirs"])


def test_make_named_takes_the_next_free_name_and_leaves_no_temporary(tmp_path):
    taken = tmp_path / "a\nb"                  # any byte but NUL in a name
    taken.write_text("someone's")
    got = ghost_janitor.make_named([str(taken), str(tmp_path / "alt")], lambda p: open(p, "x").close())
    assert got == str(tmp_path / "alt")
    with pytest.raises(FileExistsError):
        ghost_janitor.make_named([str(taken)], lambda p: os.mkdir(p), is_dir=True)
    ghost_janitor.forget(got)
    ghost_janitor.stop()
    assert sorted(os.listdir(tmp_path)) == ["a\nb", "alt"]
    assert taken.read_text() == "someone's"
