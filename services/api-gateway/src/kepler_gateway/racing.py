"""Run coroutines side by side until the first one finishes; the others are cancelled and awaited."""

import asyncio
from collections.abc import Coroutine
from typing import Any


async def first_completed(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Used where two directions of a stream race (relay vs client disconnect, the two WebSocket pumps):
    whichever ends first ends the exchange, and its exception, if any, is raised here."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
