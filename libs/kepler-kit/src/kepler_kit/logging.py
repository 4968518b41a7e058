"""structlog logs carrying the request id; secrets are redacted before rendering.

One format per process: JSON lines when `KEPLER_LOG_JSON=true`, readable text otherwise, for structlog's
own lines and for the stdlib records of the libraries underneath (arq's job lines, uvicorn's errors),
which `configure_logging` routes through the same processors. Lines go to whatever `sys.stderr` is when
they are written (a redirect, a test's capture), not the stream of the moment logging was configured.
"""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from kepler_kit.context import request_id_var

_SECRET_KEYS = ("password", "secret", "token", "authorization", "cookie", "api_key", "credentials")
# Libraries whose stdlib loggers would otherwise print with their own handlers and format.
_ROUTED_LOGGERS = ("arq", "uvicorn", "uvicorn.error")


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    rid = request_id_var.get()
    if rid and "request_id" not in event:
        event["request_id"] = rid
    return event


_secret_key_memo: dict[str, bool] = {}


def _is_secret(key: str) -> bool:
    """Memoised: a process logs a few dozen distinct keys, and this runs for each key of every line."""
    secret = _secret_key_memo.get(key)
    if secret is None:
        secret = any(word in key.lower() for word in _SECRET_KEYS)
        if len(_secret_key_memo) < 10_000:
            _secret_key_memo[key] = secret
    return secret


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in [key for key in event if _is_secret(key)]:
        event[key] = "[redacted]"
    return event


class _Stderr:
    """structlog's PrintLogger, writing to the current `sys.stderr`."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


class _StderrHandler(logging.StreamHandler[TextIO]):
    """The stdlib side of `_Stderr`."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        _redact,
    ]


def _renderer(json: bool) -> Processor:
    return structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)


def stdlib_handler(level: str, json: bool) -> logging.Handler:
    """A handler rendering stdlib records (with their logger's name) exactly like structlog's lines."""
    handler = _StderrHandler()
    handler.setLevel(level.upper())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _renderer(json),
            ],
        )
    )
    return handler


def route_stdlib_logging(level: str, json: bool) -> None:
    """arq and uvicorn log through the stdlib: send their records through our processors, once (a
    second call replaces the handler of the first), leaving any other handler alone (pytest's capture)."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    root.addHandler(stdlib_handler(level, json))
    for name in _ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("arq").setLevel(level.upper())


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    structlog.configure(
        processors=[*_shared_processors(), structlog.processors.format_exc_info, _renderer(json)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_: _Stderr(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    route_stdlib_logging(level, json)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
