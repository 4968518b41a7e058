"""Supervisor log lines: a readable message followed by `key=value` fields, or JSON.

The devstack shares one terminal with ten processes, so its own lines carry the same `name | ` prefix as
theirs and stay greppable (`grep 'proc=app-service'`) without pulling a structured-logging library into
a process whose memory counts against the footprint budget.

With `KEPLER_LOG_JSON=true` every line is one JSON object instead, the devstack's own and its children's
(`child_line` adds `"proc"` to a child's JSON line, and wraps a line that is not JSON, a traceback say),
so the whole of `make run`'s output can be fed to a log pipeline.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
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


class JsonFormatter(logging.Formatter):
    """The keys the services' structlog lines use: timestamp, level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": "devstack",
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, default=str)


_json_lines = False


def child_line(prefix: str, line: str) -> str:
    """A child's output line as the devstack prints it: `prefix | line`, or JSON naming the process."""
    if not _json_lines:
        return f"{prefix} | {line}"
    proc = json.dumps(prefix.strip())
    if line.startswith("{") and line.endswith("}"):
        rest = line[1:].lstrip()
        return f'{{"proc": {proc}' + (", " + rest if rest != "}" else "}")
    return f'{{"proc": {proc}, "event": {json.dumps(line)}}}'


def _quote(value: object) -> str:
    """Quote only when needed so the common case stays easy to read."""
    text = str(value)
    return repr(text) if (not text or any(c in text for c in " \"'=")) else text


class _TerminalHandler(logging.StreamHandler[TextIO]):
    """Silent once the terminal is gone (`| tee` killed by the same Ctrl-C): shutdown carries on."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (overrides logging.Handler.handleError)
        if not isinstance(sys.exc_info()[1], BrokenPipeError):
            super().handleError(record)


def configure_logging(
    stream: TextIO, width: int, level: int = logging.INFO, json_lines: bool = False
) -> None:
    """Route devstack logs to `stream`, prefixed like a child process called `devstack` (or as JSON)."""
    global _json_lines
    _json_lines = json_lines
    handler = _TerminalHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else LogfmtFormatter(f"{'devstack':<{width}}"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
