"""Live migration: pre-copy rounds through a page server, then the final dump, then the restore on
the destination (crpy.migrate.source, crpy.migrate.receive); cli.py runs the commands."""
