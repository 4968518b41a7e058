"""`<data dir>/stack.json`: where a running devstack's PostgreSQL and Redis are, for the commands a
developer runs beside `make run` (`make admin`, `kepler-admin`), which must reach those servers and not
whatever answers on the default ports.

The file exists while the devstack runs (a crash may leave it behind; readers then fail to connect and
say so). It may hold a password when KEPLER_DATABASE_URL has one, so only its owner can read it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

STATE_FILE = "stack.json"


@contextlib.contextmanager
def recorded(data_dir: Path, urls: Mapping[str, str]) -> Iterator[Path]:
    """Write `{"pid", "database_url", "redis_url"}` for as long as the block runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    state = {
        "pid": os.getpid(),
        "database_url": urls["KEPLER_DATABASE_URL"],
        "redis_url": urls["KEPLER_REDIS_URL"],
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(state, indent=2) + "\n")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
