"""What a careless client or an attacker sends the feed is a 4xx problem, never a 500 or a stream."""

import httpx
import pytest

from kepler_alert_service.feed.testing import Feed, World
from kepler_kit.testing.hostile import CRAFTED_CURSORS

PATHS = ["/api/v1/events", "/api/v1/events/stream"]
HOSTILE_QUERIES = [
    {"namespace": "team-a\u0000"},
    {"namespace": "x" * 10_000},
    {"namespace": "Team-A"},
    {"namespace": "team-a", "app": "web\u0000"},
    {"kind": "app.scaled\u0000"},
    {"kind": "k" * 65},
    {"kind": ["app.*"] * 51},
    {"actor": "dev@example.com\u0000"},
    {"actor": "a" * 255},
    {"since": "yesterday"},
    {"since": "2026-11-30T12:00:00"},  # no offset: which zone?
    {"since": "99999-01-01T00:00:00Z"},
    {"until": "2026-13-45T00:00:00Z"},
]
HOSTILE_PAGES = [{"limit": "1" + "0" * 30}, {"limit": "0"}, {"limit": "-5"}]
HOSTILE_IDS = ["abc", "-1", "0", str(2**63), "1" * 40, "1.5", "1e3"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("params", HOSTILE_QUERIES, ids=repr)
async def test_hostile_query_is_a_4xx_problem(
    feed: Feed, feed_world: World, path: str, params: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client:
        response = await client.get(path, params=params)

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("params", HOSTILE_PAGES, ids=repr)
async def test_a_hostile_page_size_is_a_422(feed: Feed, feed_world: World, params: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client:
        response = await client.get(PATHS[0], params=params)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("cursor", CRAFTED_CURSORS)
async def test_a_cursor_this_api_did_not_issue_is_a_400(feed: Feed, feed_world: World, cursor: str) -> None:
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client:
        response = await client.get(PATHS[0], params={"cursor": cursor})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("last_event_id", HOSTILE_IDS)
async def test_a_last_event_id_that_is_no_event_id_is_a_422(
    feed: Feed, feed_world: World, last_event_id: str
) -> None:
    async with httpx.AsyncClient(base_url=feed.url, headers=feed_world.headers_for("admin")) as client:
        response = await client.get(PATHS[1], headers={"last-event-id": last_event_id})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
