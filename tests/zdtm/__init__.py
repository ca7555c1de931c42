"""The zdtm regression harness: C test programs written to the zdtm protocol, the harness that
dumps and restores them with crpy (run.py), and the pytest wrappers around it."""
