"""`python -m crpy` is the crpy command."""

from crpy.cli import main

raise SystemExit(main())
