"""Who sees what in the feed, listed and followed live, for every kind of caller: members see their
namespaces' events (any role), admins everything, a confined token its namespace only; of the events that
name no namespace, announcements are everyone's and the rest admins'; anonymous callers nothing at all."""

import httpx
import pytest

from kepler_alert_service.feed.testing import (
    CALLERS,
    Caller,
    Feed,
    Reader,
    World,
    announcement,
    platform_alert,
    scaled,
)

A, B, ANNOUNCEMENT, PLATFORM = "team-a event", "team-b event", "announcement", "platform alert"
MEMBER_OF_A = {A, ANNOUNCEMENT}
SEES: dict[str, set[str] | None] = {
    "admin": {A, B, ANNOUNCEMENT, PLATFORM},
    "owner of A": MEMBER_OF_A,
    "maintainer of A": MEMBER_OF_A,
    "developer of A": MEMBER_OF_A,
    "viewer of A": MEMBER_OF_A,
    "member of B only": {B, ANNOUNCEMENT},
    "token confined to A": {A},
    "read-scope token of A's owner": MEMBER_OF_A,
    "anonymous": None,  # 401
}
# Filtering by team-b: those who cannot see it get the 404 any route in a hidden namespace gives.
MAY_FILTER_BY_B = {"admin", "member of B only"}
BY_CALLER = [pytest.param(caller, id=caller.label) for caller in CALLERS]


async def publish_world(feed: Feed, feed_world: World) -> tuple[int, dict[int, str]]:
    """One event of each reach, after a marker; returns the marker's id and what each event is."""
    [marker] = await feed.publish(platform_alert())
    ids = await feed.publish(
        scaled(feed_world, "team-a", 1), scaled(feed_world, "team-b", 2), announcement(), platform_alert()
    )
    await feed.caught_up()
    return marker, dict(zip(ids, [A, B, ANNOUNCEMENT, PLATFORM], strict=True))


def test_every_kind_of_caller_is_covered() -> None:
    assert set(SEES) == {caller.label for caller in CALLERS}


@pytest.mark.parametrize("caller", BY_CALLER)
async def test_the_list_shows_each_caller_what_they_may_see(
    feed: Feed, feed_world: World, caller: Caller
) -> None:
    marker, what = await publish_world(feed, feed_world)
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers(caller)) as client:
        response = await client.get("/api/v1/events")

    if SEES[caller.label] is None:
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        return
    assert response.status_code == 200, response.text
    seen = {what[item["id"]] for item in response.json()["items"] if item["id"] > marker}
    assert seen == SEES[caller.label]


@pytest.mark.parametrize("caller", BY_CALLER)
async def test_the_stream_shows_each_caller_what_they_may_see(
    feed: Feed, feed_world: World, caller: Caller
) -> None:
    marker, what = await publish_world(feed, feed_world)
    headers = {**feed_world.headers(caller), "last-event-id": str(marker)}
    async with (
        httpx.AsyncClient(base_url=feed.url, headers=headers) as client,
        client.stream("GET", "/api/v1/events/stream") as response,
    ):
        if SEES[caller.label] is None:
            assert response.status_code == 401
            return
        assert response.status_code == 200
        received = await Reader(response).until_idle()

    assert {what[int(frame.id or 0)] for frame in received} == SEES[caller.label]


@pytest.mark.parametrize("caller", BY_CALLER)
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/events/stream"])
async def test_filtering_by_a_namespace_one_cannot_see_is_not_found(
    feed: Feed, feed_world: World, caller: Caller, path: str
) -> None:
    async with (
        httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers(caller)) as client,
        client.stream("GET", path, params={"namespace": "team-b"}) as response,
    ):
        status = response.status_code
        body = b"" if status == 200 else await response.aread()

    if SEES[caller.label] is None:
        assert status == 401
    elif caller.label in MAY_FILTER_BY_B:
        assert status == 200
    else:
        assert status == 404
        assert b"Namespace 'team-b' does not exist." in body
