"""A distributed soak of kachery-resource: real parts on loopback, load, faults, checks.

Run it with ``scripts/soak`` (``--help`` for the flags); docs/reliability.md shows a run.
"""
