"""What a client following a deployment sees: events stored in Postgres (so a reconnect can catch up via
Last-Event-ID) and announced on Redis after commit (so a follower wakes up instead of polling)."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.releases import repository
from kepler_app_service.releases.states import TERMINAL
from kepler_db import Deployment, DeploymentEvent
from kepler_kit.jobs import after_commit

KEEPALIVE_SECONDS = 15.0


def channel(deployment_id: uuid.UUID) -> str:
    return f"kepler:deployment:{deployment_id}"


def record(session: AsyncSession, deployment: Deployment, kind: str, data: dict[str, Any]) -> None:
    session.add(DeploymentEvent(deployment_id=deployment.id, kind=kind, data=data))

    async def announce(redis: ArqRedis) -> None:
        await redis.publish(channel(deployment.id), kind)

    after_commit(session, announce)


def status_event(deployment: Deployment) -> dict[str, Any]:
    return {
        "status": deployment.status.value,
        "reason": deployment.reason,
        "message": deployment.message,
        "replicas": deployment.replicas,
    }


def sse(event: DeploymentEvent) -> str:
    data = json.dumps({**event.data, "at": event.occurred_at.isoformat()}, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


async def follow(
    sessionmaker: async_sessionmaker[AsyncSession], redis: Redis, deployment_id: uuid.UUID, after: int
) -> AsyncIterator[str]:
    """Replays what the client missed, then each event as it is committed; ends once the deployment is
    final and everything committed with its final status was sent (an automatic rollback is recorded just
    after its deployment's final status, in the same transaction: a live follower must hear of it too).

    The status is read before the events: when it was already final, its final events were committed
    before that read, so the events read next include them, and the stream may end, also for a client
    that reconnects with the last event's id and has nothing left to receive.
    """
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(channel(deployment_id))  # before reading: nothing can slip between the two
        while True:
            async with sessionmaker() as session:
                status = await repository.deployment_status(session, deployment_id)
                events = await repository.events_after(session, deployment_id, after)
            for event in events:
                yield sse(event)
                after = event.id
            if status is None or status in TERMINAL:
                return
            if await pubsub.get_message(ignore_subscribe_messages=True, timeout=KEEPALIVE_SECONDS) is None:
                yield ": keep-alive\n\n"
