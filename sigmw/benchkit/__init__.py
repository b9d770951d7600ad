"""Pieces of `sigmw bench` (sigmw/bench.py): tools and processes, relays, the Python generator,
the report."""
