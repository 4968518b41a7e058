"""Fixed-window rate limits in Redis, shared by every gateway replica."""

import time

from redis.asyncio import Redis

from kepler_kit.errors import TooManyRequests


class RateLimited(TooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many attempts; try again in {retry_after} s.", headers={"Retry-After": str(retry_after)}
        )


async def hit(redis: Redis, key: str, limit: int, window: int) -> None:
    """Count one attempt against `key`; raise once `limit` is exceeded within the window."""
    slot = int(time.time()) // window
    name = f"kepler:rl:{key}:{slot}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(name)
        pipe.expire(name, window + 1)
        count, _ = await pipe.execute()

    if int(count) > limit:
        raise RateLimited(window - int(time.time()) % window)


async def peek(redis: Redis, key: str, limit: int, window: int) -> None:
    """Raise if `key` is already over its limit, without counting (checked before expensive work)."""
    slot = int(time.time()) // window
    count = await redis.get(f"kepler:rl:{key}:{slot}")
    if count is not None and int(count) >= limit:
        raise RateLimited(window - int(time.time()) % window)
