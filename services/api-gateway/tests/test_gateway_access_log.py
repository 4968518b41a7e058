"""The gateway's own access line for proxied traffic: its hot path bypasses the kit's middleware."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest


@pytest.fixture
async def logging_gateway(logging_gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=logging_gateway_url, timeout=10) as client:
        yield client


def access_lines(stderr: str, request_id: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event") == "request" and r.get("request_id") == request_id]


async def test_a_proxied_request_leaves_one_line_with_its_route_pattern(
    logging_gateway: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Successful requests left no line at all (uvicorn runs with --no-access-log)."""
    response = await logging_gateway.get(
        "/api/v1/namespaces/team-a/echo", params={"token": "hunter2"}, headers={"x-request-id": "gw-access-1"}
    )

    assert response.status_code == 200
    stderr = capsys.readouterr().err
    [line] = access_lines(stderr, "gw-access-1")
    assert (line["method"], line["route"], line["status"]) == ("GET", "/api/v1/namespaces/**", 200)
    assert line["service"] == "api-gateway"
    assert isinstance(line["duration_ms"], float)
    assert "hunter2" not in stderr
    assert "team-a" not in json.dumps(line)  # the pattern, not the path


async def test_the_gateways_own_routes_are_logged_once_too(
    logging_gateway: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await logging_gateway.get("/api/v1/me", headers={"x-request-id": "gw-access-2"})

    [line] = access_lines(capsys.readouterr().err, "gw-access-2")
    assert (line["route"], line["status"]) == ("/api/v1/me", 401)
