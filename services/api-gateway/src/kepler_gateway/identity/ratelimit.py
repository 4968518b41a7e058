"""Fixed-window rate limits in Redis, shared by every gateway replica.

They fail closed: without Redis no attempt can be counted, so login, refresh and token creation answer
503 (with Retry-After) rather than letting unlimited password guesses through while Redis is away.
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kepler_kit.errors import ServiceUnavailable, TooManyRequests

RETRY_AFTER = 5  # seconds: Redis restarts quickly, and a client should not hammer a limiter that is away


class RateLimited(TooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many attempts; try again in {retry_after} s.", headers={"Retry-After": str(retry_after)}
        )


class LimiterUnavailable(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__(
            "Sign-in is briefly unavailable: attempts cannot be counted right now. Try again shortly.",
            headers={"Retry-After": str(RETRY_AFTER)},
        )


@asynccontextmanager
async def _counting() -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise LimiterUnavailable from exc


async def hit(redis: Redis, key: str, limit: int, window: int) -> None:
    """Count one attempt against `key`; raise once `limit` is exceeded within the window."""
    slot = int(time.time()) // window
    name = f"kepler:rl:{key}:{slot}"
    async with _counting(), redis.pipeline(transaction=True) as pipe:
        pipe.incr(name)
        pipe.expire(name, window + 1)
        count, _ = await pipe.execute()

    if int(count) > limit:
        raise RateLimited(window - int(time.time()) % window)


async def peek(redis: Redis, key: str, limit: int, window: int) -> None:
    """Raise if `key` is already over its limit, without counting (checked before expensive work)."""
    slot = int(time.time()) // window
    async with _counting():
        count = await redis.get(f"kepler:rl:{key}:{slot}")
    if count is not None and int(count) >= limit:
        raise RateLimited(window - int(time.time()) % window)
