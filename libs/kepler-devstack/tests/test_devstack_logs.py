"""`KEPLER_LOG_JSON=true make run`: every line the terminal gets is one JSON object, naming its process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections.abc import Iterator

import pytest

from kepler_devstack import logfmt
from kepler_devstack.logfmt import configure_logging, fields, log
from kepler_devstack.supervisor import ProcessSpec, Shutdown, Supervisor


@pytest.fixture
def json_terminal() -> Iterator[io.StringIO]:
    """The devstack's logging is process-wide: put it back as it was."""
    saved = (list(log.handlers), log.propagate, log.level, logfmt._json_lines)
    out = io.StringIO()
    configure_logging(out, 8, json_lines=True)
    try:
        yield out
    finally:
        log.handlers[:], log.propagate, log.level = saved[0], saved[1], saved[2]
        logfmt._json_lines = saved[3]


async def test_devstack_and_child_lines_are_all_json(json_terminal: io.StringIO) -> None:
    """Before, the supervisor wrote `name | text` around the services' JSON, and its own lines as logfmt."""
    statements = 'print(\'{"event": "started", "level": "info"}\'); print(\'Traceback (plain)\', flush=True)'
    spec = ProcessSpec("svc", (sys.executable, "-c", f"{statements}; import signal; signal.pause()"))
    shutdown = Shutdown()
    task = asyncio.create_task(Supervisor([spec], os.environ, shutdown, out=json_terminal).run())
    deadline = time.monotonic() + 10
    while "Traceback (plain)" not in json_terminal.getvalue():
        assert time.monotonic() < deadline, json_terminal.getvalue()
        await asyncio.sleep(0.02)
    log.info("embedded Redis ready", extra=fields(url="redis://127.0.0.1:6390/0"))
    shutdown.request()
    await asyncio.wait_for(task, 15)

    records = [json.loads(line) for line in json_terminal.getvalue().splitlines()]
    assert {"proc": "svc", "event": "started", "level": "info"} in records
    assert {"proc": "svc", "event": "Traceback (plain)"} in records
    [own] = [r for r in records if r["event"] == "embedded Redis ready"]
    assert (own["logger"], own["level"], own["url"]) == ("devstack", "info", "redis://127.0.0.1:6390/0")
    assert "timestamp" in own
