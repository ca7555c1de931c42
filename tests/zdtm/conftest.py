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


@pytest.fixture
def dump_test(tmp_path):
    """dump_test(NAME, *DUMP_OPTIONS) starts zdtm test NAME and dumps it into tmp_path/images; returns (test,
    images dir).  The test is killed at the end, whatever happened."""
    from tests.zdtm import harness

    started = []

    def run(name, *extra):
        test = harness.ZdtmTest(name, str(tmp_path))
        started.append(test)
        test.start()
        images = tmp_path / "images"
        images.mkdir()
        try:
            harness.dump(test.pid, str(images), extra=extra)
        except harness.HarnessError as e:
            pytest.fail(f"dump of {name} failed: {e}")
        return test, str(images)

    yield run
    for test in started:
        test.kill()
