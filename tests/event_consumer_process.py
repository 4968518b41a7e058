"""A worker's consumer in a process of its own, for the test that kills it: its handler writes each event's
effect, says `mid-batch` on stdout half-way through a batch, and then waits to be killed."""

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from kepler_kit.db import create_sessionmaker
from kepler_kit.events import Consumer, StoredEvent, consume_once


async def count(session: AsyncSession, events: Sequence[StoredEvent], stall: bool = False) -> None:
    for n, event in enumerate(events):
        await session.execute(
            text(
                "INSERT INTO effects (event_id, handled) VALUES (:id, 1)"
                " ON CONFLICT (event_id) DO UPDATE SET handled = effects.handled + 1"
            ),
            {"id": event.id},
        )
        if stall and n == len(events) // 2:
            await session.flush()
            sys.stdout.write("mid-batch\n")
            sys.stdout.flush()
            await asyncio.sleep(3600)


def consumer(stall: bool = False) -> Consumer:
    async def handle(session: AsyncSession, events: Sequence[StoredEvent]) -> None:
        await count(session, events, stall)

    return Consumer("counter", ["app.*"], handle, batch=100)


async def main(url: str) -> None:
    engine = create_async_engine(url)
    await consume_once(create_sessionmaker(engine), consumer(stall=True))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
