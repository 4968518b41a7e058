"""A follower whose queue overflows is dropped, and its client, reconnecting with the last id it got,
loses nothing: a slow client cannot hold the tail (or the other followers) back."""

from typing import Any

import httpx
import pytest

from kepler_alert_service.feed.testing import Feed, Frame, Reader, World, scaled

STREAM = "/api/v1/events/stream"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "feed_follower_queue": 2}


async def test_an_overflowing_follower_is_dropped_and_resumes_without_loss(
    feed: Feed, feed_world: World
) -> None:
    [marker] = await feed.publish(scaled(feed_world, "team-a", 0))
    await feed.caught_up()
    last = str(marker)
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("viewer")) as client:
        async with client.stream("GET", STREAM, headers={"last-event-id": last}) as response:
            reader = Reader(response)
            published = await feed.publish(*(scaled(feed_world, "team-a", n) for n in range(1, 6)))
            before: list[Frame] = []
            while (frame := await reader.next()) is not None:  # the stream ends: the follower was dropped
                before += [frame] if frame.data is not None else []
        last = before[-1].id or "" if before else last

        async with client.stream("GET", STREAM, headers={"last-event-id": last}) as response:
            after = await Reader(response).take(len(published) - len(before))

    assert [int(frame.id or 0) for frame in before + after] == published
