"""Which failures are the caller's bad data and which are a dependency briefly gone.

Two questions asked of any exception, wherever it surfaced (a request, a job, an after-commit publish):
- `is_transient`: Postgres or Redis could not be reached, or dropped the connection. Nothing is wrong with
  the request; trying again shortly will do (a 503 with `Retry-After`, a job retried with backoff).
- `is_data_error`: Postgres refused a value (SQLSTATE class 22: a NUL byte, a number out of range, text
  that is not a valid number): the caller's input, so a 422, never a 500.
- `is_concurrent_conflict`: the request lost a race with another (a unique or foreign key constraint that a
  concurrent request's row or delete broke, a deadlock, a serialization failure): a 409, never a 500.
"""

import socket
from collections.abc import Iterator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATE codes meaning "another transaction got there first": integrity constraint violations (class 23),
# deadlock_detected and serialization_failure.
_CONFLICT_STATES = ("23", "40P01", "40001")
# SQLSTATE codes meaning "the server is not there for you right now".
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_TRANSIENT_TYPES = (
    ConnectionError,  # refused, reset, broken pipe
    TimeoutError,
    socket.gaierror,  # the host name does not resolve (yet)
    RedisConnectionError,
    RedisTimeoutError,
    PoolTimeout,  # every pooled connection is busy: back off
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (`orig` for SQLAlchemy) and what it was raised from, each once.

    Not `__context__`: an unrelated error raised while handling a dropped connection is not transient."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, current.__cause__]


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or "")


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT_TYPES) or type(exc) is OSError:  # not SSLError, FileNotFoundError...
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return _sqlstate(exc).startswith(_UNAVAILABLE_STATES)


def is_transient(exc: BaseException) -> bool:
    """Postgres or Redis unreachable or gone mid-request: retry later, nothing to fix in the request."""
    return any(_is_transient_one(e) for e in _chain(exc))


def is_data_error(exc: BaseException) -> bool:
    """Postgres (or asyncpg encoding a parameter) refused a value: SQLSTATE class 22."""
    return not is_transient(exc) and any(_sqlstate(e).startswith("22") for e in _chain(exc))


def is_concurrent_conflict(exc: BaseException) -> bool:
    """Postgres refused the change because of another transaction's: a name just taken, a parent just
    deleted, a deadlock between two requests. Reading the state again shows what happened."""
    return not is_transient(exc) and any(_sqlstate(e).startswith(_CONFLICT_STATES) for e in _chain(exc))
