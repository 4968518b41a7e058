"""A worker's consumer in a process of its own: its handler counts each event it handles in table `effects`.

Run as a script, it takes one step that stalls half-way through its batch (it says `mid-batch` on stdout and
waits to be killed); as `WorkerSettings`, it is a whole worker following the log."""

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from kepler_kit.db import create_sessionmaker
from kepler_kit.events import Consumer, StoredEvent, consume_once
from kepler_kit.settings import KeplerSettings
from kepler_kit.worker import built_on_first_use, worker_settings


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


def create_worker_settings() -> type:
    """A worker whose only work is the `counter` consumer (`python -m kepler_kit.worker
    event_consumer_process.WorkerSettings`), on KEPLER_DATABASE_URL and KEPLER_REDIS_URL."""
    return worker_settings("event-test", KeplerSettings(), [], consumers=[consumer()])


__getattr__ = built_on_first_use(__name__, create_worker_settings)
