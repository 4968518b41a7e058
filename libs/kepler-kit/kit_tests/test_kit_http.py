"""The kit as a client of any Kepler service sees it: problem+json everywhere, commit before the response."""

import httpx
from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import models

PROBLEM = "application/problem+json"


async def queued(arq: ArqRedis, queue_name: str) -> int:
    return int(await arq.zcard(queue_name))


class TestProblemShapes:
    async def test_kepler_error(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/kit/conflict/a", headers={"x-request-id": "abc-1"})
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM
        assert response.json() == {
            "type": "https://kepler.dev/problems/conflict",
            "title": "Conflict",
            "status": 409,
            "detail": "changed my mind",
            "instance": "/api/v1/kit/conflict/a",
            "request_id": "abc-1",
        }

    async def test_validation_error_lists_fields(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/kit/items/abc", params={"limit": "x"})
        problem = response.json()
        assert (response.status_code, response.headers["content-type"]) == (422, PROBLEM)
        assert {tuple(e["loc"]) for e in problem["errors"]} == {("path", "item_id"), ("query", "limit")}

    async def test_a_stray_trailing_slash_is_a_404_not_a_redirect(self, client: httpx.AsyncClient) -> None:
        """Services sit behind the gateway: a redirect would point clients at the service's own address
        (an outside tester got `location: http://127.0.0.1:8001/...` through the gateway)."""
        response = await client.get("/api/v1/kit/items/1/")
        assert (response.status_code, response.headers["content-type"]) == (404, PROBLEM)
        assert "location" not in response.headers

    async def test_unknown_route_and_wrong_method(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/nope")).json()["status"] == 404
        wrong = await client.delete("/api/v1/kit/boom")
        assert (wrong.status_code, wrong.headers["content-type"]) == (405, PROBLEM)

    async def test_unhandled_exception_leaks_nothing(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/kit/boom")
        assert (response.status_code, response.headers["content-type"]) == (500, PROBLEM)
        assert "hunter2" not in response.text
        assert "Traceback" not in response.text
        assert response.json()["request_id"] == response.headers["x-request-id"]

    async def test_request_id_generated_or_sanitised(self, client: httpx.AsyncClient) -> None:
        generated = (await client.get("/healthz")).headers["x-request-id"]
        assert len(generated) == 32
        forged = (await client.get("/healthz", headers={"x-request-id": "a b\tc"})).headers["x-request-id"]
        assert forged != "a b\tc"


class TestSessionBoundary:
    async def test_success_commits_and_enqueues_after(
        self, client: httpx.AsyncClient, session: AsyncSession, arq: ArqRedis, queue_name: str
    ) -> None:
        response = await client.post("/api/v1/kit/ok/team-a")
        assert response.status_code == 201
        assert await session.scalar(select(func.count()).select_from(models.Namespace)) == 1
        assert await queued(arq, queue_name) == 1
        job_ids = [key.decode() for key in await arq.zrange(queue_name, 0, -1)]
        assert job_ids == [f"activate:{response.json()['id']}"]

    async def test_error_rolls_back_and_drops_jobs(
        self, client: httpx.AsyncClient, session: AsyncSession, arq: ArqRedis, queue_name: str
    ) -> None:
        assert (await client.post("/api/v1/kit/conflict/team-a")).status_code == 409
        assert await session.scalar(select(func.count()).select_from(models.Namespace)) == 0
        assert await queued(arq, queue_name) == 0

    async def test_commit_failure_is_not_reported_as_success(
        self, client: httpx.AsyncClient, arq: ArqRedis, queue_name: str
    ) -> None:
        """The row refers to a namespace that is not there (as when a concurrent request deleted it): the
        commit fails, so the answer is a 409 problem, and the job buffered on it is never sent."""
        response = await client.post("/api/v1/kit/commit-fails")
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM
        assert await queued(arq, queue_name) == 0
