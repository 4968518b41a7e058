"""Start (or adopt) the embedded PostgreSQL for one data directory, in a short-lived process of its own.

pgserver is kept out of the caller on purpose: it warns at import time (XDG_RUNTIME_DIR), caches servers
in a process-global dict, registers atexit hooks and pulls in psutil. A throwaway process keeps all that
away from the supervisor (whose memory is budgeted) and from test processes (which turn warnings into
errors). Prints one JSON line, `{"pid": ..., "socket_dir": ...}`, and exits; the server keeps running.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from kepler_devstack import procfs

SETTLE_TIMEOUT_S = 15.0


def _read_pidfile(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None


def settle_previous_server(pgdata: Path) -> None:
    """Leave either a ready postmaster to adopt or none at all.

    pgserver trusts any live pid in postmaster.pid, so a pid recycled after a reboot (common in
    containers) would be "adopted" and the URL would point at a dead socket: drop such a stale file.
    A server still starting or stopping (e.g. an immediate `make run` after Ctrl-C) is waited out.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while (lines := _read_pidfile(pgdata)) is not None and time.monotonic() < deadline:
        pid = int(lines[0])
        if procfs.process_name(pid) not in (None, "postgres") or not procfs.pid_alive(pid):
            (pgdata / "postmaster.pid").unlink(missing_ok=True)
            return
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        time.sleep(0.1)


def _get_server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    return get_server(pgdata, cleanup_mode=None)


def main(argv: list[str]) -> int:
    pgdata = Path(argv[1]).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    settle_previous_server(pgdata)
    info = _get_server(pgdata).get_postmaster_info()
    sys.stdout.write(json.dumps({"pid": info.pid, "socket_dir": str(info.socket_dir or pgdata)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
