"""The command lines of crpy page-server, receive, migrate and dump --page-server: every mistake
and every unreachable server is one line and a non-zero exit, and the task is left alone."""

import os
import subprocess

import pytest

from tests.unit.crhelpers import crpy, kill_quietly


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    kill_quietly(proc.pid)
    proc.wait()


def _one_line(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    return lines[0]


def test_migrate_wants_host_and_port(sleeper):
    assert "--to 'nowhere': not HOST:PORT" in _one_line(crpy("migrate", "-t", sleeper, "--to", "nowhere"))


def test_migrate_lazy_to_an_unreachable_receiver_leaves_the_task_alone(sleeper, tmp_path):
    line = _one_line(crpy("migrate", "-t", sleeper, "--to", "127.0.0.1:1", "--lazy", "-D", tmp_path))
    assert "cannot connect to the page server at 127.0.0.1:1" in line
    assert os.path.exists(f"/proc/{sleeper}")


def test_lazy_pages_from_an_unreachable_page_server_is_one_line(tmp_path):
    line = _one_line(crpy("lazy-pages", "-D", tmp_path, "--page-server", "--address", "127.0.0.1", "--port", "1"))
    assert "page server 127.0.0.1:1" in line and "cannot connect" in line


def test_unreachable_receiver_leaves_the_task_alone(sleeper, tmp_path):
    line = _one_line(crpy("migrate", "-t", sleeper, "--to", "127.0.0.1:1", "-D", tmp_path))
    assert "cannot connect to the page server at 127.0.0.1:1" in line
    assert os.path.exists(f"/proc/{sleeper}") and open(f"/proc/{sleeper}/stat").read().split()[2] in "SR"


def test_dump_page_server_needs_a_port(sleeper, tmp_path):
    line = _one_line(crpy("dump", "-t", sleeper, "-D", tmp_path, "--page-server"))
    assert "--page-server needs --port" in line
    line = _one_line(crpy("dump", "-t", sleeper, "-D", tmp_path, "--page-server", "--address", "127.0.0.1",
                          "--port", "1"))
    assert "cannot connect to the page server" in line
    assert os.path.exists(f"/proc/{sleeper}")


def test_page_server_refuses_a_missing_directory(tmp_path):
    line = _one_line(crpy("page-server", "-D", tmp_path / "missing", "--port", "0"))
    assert "not a directory" in line
