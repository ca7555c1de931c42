"""crpy's command line (crpy.cli): the table of commands, _COMMANDS, from which the parser of the
one command given is built, names every command, each takes --help, and it matches the commands
the README and `crpy --help` document."""

import os
import re
import subprocess
import sys

import pytest

from crpy import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _crpy(*argv):
    return subprocess.run([sys.executable, "-m", "crpy", *argv], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("command", list(cli._COMMANDS))
def test_every_command_takes_help(command):
    done = _crpy(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: crpy {command} ")


def test_one_command_parser_has_that_command_alone():
    parser = cli._parser("show")
    assert list(parser._subparsers._group_actions[0].choices) == ["show"]
    assert parser.parse_args(["show", "x"]).paths == ["x"]


def test_top_level_help_lists_every_command():
    done = _crpy("--help")
    assert done.returncode == 0
    listed = re.findall(r"^    ([a-z-]+)", done.stdout, re.M)
    assert listed == list(cli._COMMANDS)


def test_table_matches_the_documented_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    documented = set(re.findall(r"^ {4}crpy ([a-z][a-z-]*)", readme, re.M))
    assert documented == set(cli._COMMANDS)
    for command in cli._COMMANDS:                  # the module's docstring names each one too
        assert command in cli.__doc__


def test_unknown_command_gets_the_whole_parser():
    done = _crpy("frobnicate")
    assert done.returncode == 2 and "invalid choice" in done.stderr
