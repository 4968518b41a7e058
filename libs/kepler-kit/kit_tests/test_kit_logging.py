"""Logs as an operator reads them: one access line per request, and one format per process."""

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.identities import Minter, make_user
from kepler_kit.testing.services import service_client

from .kit_app import create_kit_app


@pytest.fixture
async def client(
    settings_overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    settings = KeplerSettings(**settings_overrides, log_json=True, log_level="INFO")
    async with service_client(create_kit_app(settings), sessionmaker=sessionmaker, arq=arq) as client:
        yield client


def access_lines(stderr: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == "request"]


class TestAccessLog:
    async def test_a_request_leaves_exactly_one_line_with_who_what_and_how_long(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        minter: Minter,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Services ran with uvicorn's access log off and wrote nothing for a successful request."""
        user = await make_user(session, "logged@example.com")
        capsys.readouterr()

        response = await client.get(
            "/api/v1/status/kit-test",
            params={"api_key": "hunter2"},
            headers={**minter.access(user), "x-request-id": "req-access-1"},
        )

        assert response.status_code == 200
        stderr = capsys.readouterr().err
        [line] = [line for line in access_lines(stderr) if line.get("request_id") == "req-access-1"]
        assert line["method"] == "GET"
        assert line["route"] == "/api/v1/status/kit-test"
        assert line["status"] == 200
        assert isinstance(line["duration_ms"], float)
        assert line["user_id"] == str(user.id)
        assert line["service"] == "kit-test"
        assert "hunter2" not in stderr  # no query strings: they carry secrets

    async def test_failures_are_logged_by_route_template_without_a_user(
        self, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await client.get("/api/v1/kit/items/abc", headers={"x-request-id": "req-access-2"})
        await client.get("/no/such/path", headers={"x-request-id": "req-access-3"})

        lines = {line["request_id"]: line for line in access_lines(capsys.readouterr().err)}
        assert (lines["req-access-2"]["route"], lines["req-access-2"]["status"]) == (
            "/api/v1/kit/items/{item_id}",
            422,
        )
        assert (lines["req-access-3"]["route"], lines["req-access-3"]["status"]) == ("<unmatched>", 404)
        assert "user_id" not in lines["req-access-2"]

    async def test_probes_stay_out_of_the_info_log(
        self, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Kubernetes probes every few seconds would drown the lines people read."""
        await client.get("/healthz")
        assert access_lines(capsys.readouterr().err) == []


def worker_logs(json_on: bool) -> str:
    """A worker process's log set-up, then a line from arq's own (stdlib) logger, as arq writes them."""
    program = (
        "import logging; from kepler_kit.worker import configure_worker_logging; configure_worker_logging(); "
        "logging.getLogger('arq.worker').info('Starting worker for %d functions', 3)"
    )
    env = {**os.environ, "KEPLER_LOG_JSON": str(json_on).lower(), "KEPLER_LOG_LEVEL": "INFO"}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout + result.stderr


class TestWorkerLogFormat:
    def test_arq_lines_are_json_when_json_is_on(self) -> None:
        """Workers printed arq's `HH:MM:SS: message` between their JSON lines."""
        [line] = worker_logs(json_on=True).splitlines()

        record = json.loads(line)
        assert record["event"] == "Starting worker for 3 functions"
        assert (record["logger"], record["level"]) == ("arq.worker", "info")
        assert "timestamp" in record

    def test_arq_lines_are_readable_text_when_json_is_off(self) -> None:
        [line] = worker_logs(json_on=False).splitlines()

        assert not line.startswith("{")
        assert "Starting worker for 3 functions" in line
        assert "arq.worker" in line
