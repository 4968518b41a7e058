"""The deployment event stream is documented event by event, and what it sends is what it documents:
a client generated from the OpenAPI document gets typed events (not `unknown`) that parse."""

import json
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.app import create_app
from kepler_app_service.releases import events
from kepler_app_service.releases.stream import DeploymentStreamEvent
from kepler_db import DeploymentEvent

BASE = "/api/v1/namespaces/team-a/apps/web"
IMAGE = "registry.example.com/team/web"
FOLLOW = "/api/v1/namespaces/{namespace}/apps/{app}/deployments/{deployment_id}/events"
EVENTS = TypeAdapter[Any](DeploymentStreamEvent)


def frames(stream: str) -> list[dict[str, Any]]:
    """Each SSE frame as the documented object: `id`, `event` and the parsed JSON `data`."""
    parsed = []
    for frame in (f for f in stream.split("\n\n") if f.startswith("id:")):
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        parsed.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return parsed


async def deploy(client: httpx.AsyncClient, image: str, deployer: Any) -> list[dict[str, Any]]:
    created = await client.post(f"{BASE}/deployments", json={"image": image, "replicas": 2})
    assert created.status_code == 201, created.text
    await deployer.run()
    return frames((await client.get(f"{BASE}/deployments/{created.json()['id']}/events")).text)


class TestDocumentedEvents:
    def test_the_stream_documents_one_schema_per_event(self) -> None:
        document = create_app().openapi()
        ok = document["paths"][FOLLOW]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
        assert ok["type"] == "object"
        assert set(ok["discriminator"]["mapping"]) == {
            "status",
            "replicas",
            "pods",
            "auto_rollback",
            "rejected",
            "stabilising",
        }
        pods = document["components"]["schemas"]["PodSummary"]
        assert {"name", "phase", "ready", "restarts"} <= set(pods["required"])

    def test_errors_of_the_stream_stay_problems(self) -> None:
        responses = create_app().openapi()["paths"][FOLLOW]["get"]["responses"]
        assert list(responses["404"]["content"]) == ["application/problem+json"]


@pytest.mark.usefixtures("web")
class TestSentEvents:
    async def test_what_a_follower_receives_matches_the_documented_events(
        self, client: httpx.AsyncClient, deployer: Any
    ) -> None:
        sent = await deploy(client, f"{IMAGE}:1", deployer)

        for event in sent:
            EVENTS.validate_python(event)
        assert {"status", "replicas"} <= {event["event"] for event in sent}

    async def test_every_recorded_kind_renders_as_a_documented_event(
        self, client: httpx.AsyncClient, deployer: Any, session: AsyncSession
    ) -> None:
        """What a reconnecting follower replays is every recorded event, rendered by `events.sse`:
        a deployment that crash-loops and is rolled back records pods and auto_rollback events too."""
        await deploy(client, f"{IMAGE}:1", deployer)
        await deploy(client, f"{IMAGE}-crashloop:2", deployer)

        recorded = (await session.scalars(select(DeploymentEvent))).all()
        rendered = frames("".join(events.sse(row) for row in recorded))
        for event in rendered:
            EVENTS.validate_python(event)
        assert {"status", "replicas", "auto_rollback"} <= {event["event"] for event in rendered}
