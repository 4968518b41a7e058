"""The feed's list: newest first, a page at a time without gaps or repeats, narrowed by namespace, app,
kind (exact or family), actor and time; and documented so a generated client gets typed items."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from kepler_alert_service.app import create_app
from kepler_alert_service.feed.testing import Feed, World, announcement, scaled
from kepler_db import PlatformEvent
from kepler_kit.events.kinds import AppRestarted
from kepler_kit.identity import Principal

EVENTS = "/api/v1/events"


async def listed(feed: Feed, feed_world: World, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client:
        response = await client.get(EVENTS, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def restarted(feed_world: World, namespace: str, app: str) -> AppRestarted:
    return AppRestarted(namespace_id=feed_world.namespaces[namespace], namespace=namespace, app=app)


class TestPages:
    async def test_pages_walk_every_event_newest_first_once(self, feed: Feed, feed_world: World) -> None:
        published = await feed.publish(*(scaled(feed_world, "team-a", n) for n in range(7)))
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 3, "namespace": "team-a"}
        async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("viewer")) as client:
            while True:
                page = (await client.get(EVENTS, params=params)).json()
                seen += [item["id"] for item in page["items"]]
                if page["next_cursor"] is None:
                    break
                params["cursor"] = page["next_cursor"]

        assert seen == published[::-1]

    async def test_an_item_carries_the_envelope_and_the_kinds_own_fields(
        self, feed: Feed, feed_world: World
    ) -> None:
        [published] = await feed.publish(scaled(feed_world, "team-a", 3))
        [item] = await listed(feed, feed_world, limit=1)

        assert item["id"] == published
        assert (item["kind"], item["version"], item["service"]) == ("app.scaled", 1, "app-service")
        assert (item["namespace"], item["app"], item["actor"]) == ("team-a", "web", "dev@example.com")
        assert item["namespace_id"] == str(feed_world.namespaces["team-a"])
        assert item["data"] == {"replicas": 3, "before": None}
        assert item["occurred_at"]


class TestFilters:
    async def test_by_namespace_and_app(self, feed: Feed, feed_world: World) -> None:
        web_a, api_a, web_b = await feed.publish(
            restarted(feed_world, "team-a", "web"),
            restarted(feed_world, "team-a", "api"),
            restarted(feed_world, "team-b", "web"),
        )

        assert [i["id"] for i in await listed(feed, feed_world, namespace="team-a", limit=2)] == [
            api_a,
            web_a,
        ]
        assert [i["id"] for i in await listed(feed, feed_world, namespace="team-a", app="web", limit=5)] == [
            web_a
        ]
        assert [i["id"] for i in await listed(feed, feed_world, namespace="team-b", limit=5)] == [web_b]

    async def test_by_kind_exact_or_by_family_repeatable(self, feed: Feed, feed_world: World) -> None:
        scaled_id, restarted_id, announced = await feed.publish(
            scaled(feed_world, "team-a", 1), restarted(feed_world, "team-a", "web"), announcement()
        )

        exact = await listed(feed, feed_world, kind="app.restarted", limit=5)
        family = await listed(feed, feed_world, kind="app.*", limit=2)
        both = await listed(feed, feed_world, kind=["app.scaled", "announcement.*"], limit=2)

        assert [i["id"] for i in exact] == [restarted_id]
        assert [i["id"] for i in family] == [restarted_id, scaled_id]
        assert [i["id"] for i in both] == [announced, scaled_id]

    async def test_by_actor_in_any_case(self, feed: Feed, feed_world: World) -> None:
        ops = Principal(feed_world.users["owner"].id, "Ops@Example.com")
        [theirs] = await feed.publish(scaled(feed_world, "team-a", 1), actor=ops)
        await feed.publish(scaled(feed_world, "team-a", 2))

        assert [i["id"] for i in await listed(feed, feed_world, actor="ops@example.COM")] == [theirs]

    async def test_by_time_range(self, feed: Feed, feed_world: World) -> None:
        """`since` is inclusive and `until` exclusive, so consecutive ranges never count an event twice."""
        old, new = await feed.publish(scaled(feed_world, "team-a", 1), scaled(feed_world, "team-a", 2))
        noon = datetime(2026, 11, 1, 12, tzinfo=UTC)
        await feed.session.execute(
            update(PlatformEvent).where(PlatformEvent.id == old).values(occurred_at=noon - timedelta(hours=1))
        )
        await feed.session.execute(
            update(PlatformEvent).where(PlatformEvent.id == new).values(occurred_at=noon)
        )

        before = await listed(feed, feed_world, until=noon.isoformat(), namespace="team-a")
        after = await listed(
            feed, feed_world, since=noon.isoformat(), until=(noon + timedelta(1)).isoformat()
        )

        assert [i["id"] for i in before] == [old]
        assert [i["id"] for i in after] == [new]


class TestRefused:
    @pytest.mark.parametrize(
        ("params", "detail"),
        [
            ({"kind": "deployment.exploded"}, "no event kind matches"),
            ({"kind": "nothing.*"}, "no event kind matches"),
            ({"app": "web"}, "needs its namespace"),
            ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "before `since`"),
        ],
    )
    async def test_a_filter_that_cannot_mean_anything_is_a_422(
        self, feed: Feed, feed_world: World, params: dict[str, str], detail: str
    ) -> None:
        async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client:
            for path in (EVENTS, f"{EVENTS}/stream"):
                response = await client.get(path, params=params)
                assert response.status_code == 422, (path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert detail in response.json()["detail"]


class TestDocument:
    def test_items_and_stream_frames_are_typed(self) -> None:
        document = create_app().openapi()
        listing = document["paths"][EVENTS]["get"]
        stream = document["paths"][f"{EVENTS}/stream"]["get"]
        item = document["components"]["schemas"]["FeedEvent"]

        assert (listing["operationId"], stream["operationId"]) == ("listEvents", "followEvents")
        assert listing["tags"] == stream["tags"] == ["events"]
        assert {"id", "kind", "occurred_at", "namespace", "app", "actor", "data"} <= set(item["required"])
        assert item["properties"]["data"]["type"] == "object"
        assert "deployment.failed" in item["properties"]["data"]["x-kepler-kinds"]
        sent = stream["responses"]["200"]["content"]["text/event-stream"]["schema"]
        assert sent["type"] == "object"
        assert {ref["$ref"].rsplit("/", 1)[1] for ref in sent["anyOf"]} == {"EventFrame", "ResetFrame"}
        assert list(stream["responses"]["404"]["content"]) == ["application/problem+json"]
        assert "last-event-id" in {p["name"] for p in stream["parameters"]}
