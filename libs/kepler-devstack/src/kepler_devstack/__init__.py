"""Kepler's local stack: embedded PostgreSQL and Redis plus a small supervisor for every service.

`python -m kepler_devstack run` is `make run`; `kepler_devstack.embedded` is what the test plugin uses when
no external database or Redis is configured. Importing this package imports nothing heavy.
"""
