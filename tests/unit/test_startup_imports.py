"""Start-up of `crpy dump` and `crpy restore` (issue 12): a dump and a restore of one small
sleeping process import none of the modules only other runs need (json, socket, uuid, secrets,
the network lock on restore, ghost_make), each named here with the run that would need it."""

import os
import subprocess
import sys

import pytest

from tests.unit.crhelpers import read_text, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# module -> why a dump/restore of a plain process must not import it
NOT_FOR_DUMP = {
    "uuid": "memtrack's token is os.urandom",
    "secrets": "the ghost janitor names files with os.urandom",
    "socket": "the parasite channel uses _socket; memtrack imports socket only with --track-mem",
    "json": "memtrack's record, with --track-mem only",
    "crpy.resources.ghost_make": "only when files are remapped",
    "ctypes": "a pipe's tee() and FIONREAD go through crpy's cffi module and fcntl",
}
NOT_FOR_RESTORE = {
    "uuid": "as for the dump",
    "secrets": "as for the dump",
    "crpy.netlock": "only when the images hold inet sockets",
    "crpy.resources.ghost_make": "only when files were remapped at dump time",
}

# crpy cannot run with -S (protobuf lives in site-packages): the modules the interpreter's site
# imports (.pth files of the machine) are subtracted instead
_SITE_MODULES = "import sys; print(' '.join(sys.modules))"

_RUN_AND_LIST = ("import sys, atexit; sys.argv = ['crpy'] + sys.argv[1:]\n"
                 "atexit.register(lambda: open(%r, 'w').write(' '.join(sys.modules)))\n"
                 "from crpy.cli import run; run()\n")


def _crpy_modules(tmp_path, *argv):
    """The modules a crpy command imported (those the interpreter's site brought left out)."""
    listing = tmp_path / "modules"
    subprocess.run([sys.executable, "-c", _RUN_AND_LIST % str(listing), *argv], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    site = subprocess.run([sys.executable, "-c", _SITE_MODULES], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.split()
    return set(listing.read_text().split()) - set(site)


@pytest.mark.skipif(os.geteuid() != 0, reason="a dump needs root")
def test_dump_and_restore_import_only_what_they_use(tmp_path):
    sleeper = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # a dump before the exec into sleep would dump a copy of pytest (other fd kinds, other imports)
        wait_for(lambda: read_text(f"/proc/{sleeper.pid}/comm") == "sleep\n"
                 and "State:\tS" in read_text(f"/proc/{sleeper.pid}/status"), what="sleep asleep")
        images = tmp_path / "images"
        images.mkdir()
        dumped = _crpy_modules(tmp_path, "dump", "-t", str(sleeper.pid), "-D", str(images))
        sleeper.wait()
        restored = _crpy_modules(tmp_path, "restore", "-d", "-D", str(images))
    finally:
        subprocess.run(["kill", "-9", str(sleeper.pid)], stderr=subprocess.DEVNULL)
    assert "crpy.dump.pipeline" in dumped and "crpy.restore.pipeline" in restored   # the listing works
    assert not {m: why for m, why in NOT_FOR_DUMP.items() if m in dumped}
    assert not {m: why for m, why in NOT_FOR_RESTORE.items() if m in restored}
