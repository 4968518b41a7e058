"""Supervisor log lines: a readable message followed by `key=value` fields.

The devstack shares one terminal with ten processes, so its own lines carry the same `name | ` prefix as
theirs and stay greppable (`grep 'proc=app-service'`) without pulling a structured-logging library into
a process whose memory counts against the footprint budget.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LOGGER_NAME = "kepler_devstack"
log = logging.getLogger(LOGGER_NAME)


def fields(**values: object) -> dict[str, dict[str, object]]:
    """`extra=` payload for a log call; one attribute avoids clashing with LogRecord's own names."""
    return {"fields": values}


class LogfmtFormatter(logging.Formatter):
    """Renders `prefix | [level=warning ]message key=value ...`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        parts = [record.getMessage()]
        if record.levelno >= logging.WARNING:
            parts.insert(0, f"level={record.levelname.lower()}")
        values: dict[str, object] = getattr(record, "fields", {})
        parts.extend(f"{key}={_quote(value)}" for key, value in values.items())
        return f"{self._prefix} | {' '.join(parts)}"


def _quote(value: object) -> str:
    """Quote only when needed so the common case stays easy to read."""
    text = str(value)
    return repr(text) if (not text or any(c in text for c in " \"'=")) else text


class _TerminalHandler(logging.StreamHandler[TextIO]):
    """Silent once the terminal is gone (`| tee` killed by the same Ctrl-C): shutdown carries on."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError):
            super().handleError(record)


def configure_logging(stream: TextIO, width: int, level: int = logging.INFO) -> None:
    """Route devstack logs to `stream`, prefixed like a child process called `devstack`."""
    handler = _TerminalHandler(stream)
    handler.setFormatter(LogfmtFormatter(f"{'devstack':<{width}}"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
