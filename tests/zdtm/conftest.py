"""Fixtures shared by the zdtm pytest modules."""

import pytest

from tests.zdtm import procs


@pytest.fixture(scope="module")
def subreaper():
    """This pytest process becomes a child subreaper for the module: daemonized tests and anything a
    failed restore leaves behind become its children, so their exit status can be checked and
    nothing escapes.  Undone (and the children reaped) afterwards."""
    procs.set_subreaper()
    yield
    procs.set_subreaper(False)
    procs.reap_strays()
