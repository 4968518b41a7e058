"""Connection-level failures of the gateway's own stores (Postgres, Redis) while it authenticates.

The proxy checks credentials in its own code path, outside FastAPI's exception handlers: without this a
database that is down while an API token is looked up would answer 500 "internal-error", which tells a
client its request is wrong. It is the platform that is briefly unavailable: 503 with Retry-After.
"""

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import Request
from starlette.responses import Response

from kepler_kit.errors import ServiceUnavailable
from kepler_kit.logging import get_logger
from kepler_kit.problems import problem_response

log = get_logger(__name__)
RETRY_AFTER = 5  # seconds
CONNECTION_LEVEL = (
    OSError,  # refused, reset, unreachable, timed out (asyncpg raises these unwrapped on connect)
    RedisConnectionError,
    RedisTimeoutError,
    PoolTimeoutError,
    InterfaceError,
    OperationalError,
)


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, CONNECTION_LEVEL):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The platform's database or Redis is unreachable; try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


async def outage_response(request: Request, exc: Exception) -> Response:
    """For the gateway's own routes (FastAPI): the same 503 as the proxy's."""
    if not is_outage(exc):
        raise exc
    log.warning("backing_store_unavailable", path=request.url.path, error=type(exc).__name__)
    error = unavailable()
    return problem_response(error, request.url.path, headers=error.headers)
