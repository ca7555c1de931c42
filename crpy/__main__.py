"""`python -m crpy` is the crpy command."""

from crpy.cli import run

run()
