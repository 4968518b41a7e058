"""Following the feed live: every event exactly once, in log order, across reconnects, whatever the
follower missed while away; a follower that cannot keep up is dropped and loses nothing by it."""

import httpx

from kepler_alert_service.feed.testing import Feed, Frame, Reader, World
from kepler_kit.events.kinds import AppScaled

STREAM = "/api/v1/events/stream"


def scaled(world: World, replicas: int) -> AppScaled:
    namespace_id = world.namespaces["team-a"]
    return AppScaled(namespace_id=namespace_id, namespace="team-a", app="web", replicas=replicas, before=None)


def ids(frames: list[Frame]) -> list[int]:
    return [int(frame.id or 0) for frame in frames]


class TestResume:
    async def test_every_event_exactly_once_across_a_reconnect(self, feed: Feed, world: World) -> None:
        headers = world.headers_for("developer")
        async with httpx.AsyncClient(base_url=feed.url, headers=headers) as client:
            async with client.stream("GET", STREAM) as response:
                assert response.status_code == 200
                first = await feed.publish(scaled(world, 1), scaled(world, 2))
                got = await Reader(response).take(2)
            assert ids(got) == first

            missed = await feed.publish(scaled(world, 3), scaled(world, 4))
            async with client.stream("GET", STREAM, headers={"last-event-id": str(first[-1])}) as response:
                reader = Reader(response)
                replayed = await reader.take(2)
                live = await feed.publish(scaled(world, 5))
                after = await reader.take(1)
                assert await reader.until_idle() == []

        assert ids(replayed) == missed
        assert ids(after) == live
        assert [frame.data["data"]["replicas"] for frame in replayed + after] == [3, 4, 5]
