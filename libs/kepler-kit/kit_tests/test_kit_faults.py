"""Faults a client must not see as 500s: a value Postgres refuses, Postgres down, Redis down after commit."""

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select, text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_db import models
from kepler_kit.db import create_engine
from kepler_kit.metrics import REGISTRY
from kepler_kit.problems import problem_for_exception
from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.services import service_client

from .kit_app import NOTIFIED, create_kit_app

PROBLEM = "application/problem+json"


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TestValueThePostgresRefuses:
    async def test_nul_reaching_postgres_is_a_422_problem(self, client: httpx.AsyncClient) -> None:
        """The last resort behind the schema types: a data error (SQLSTATE 22) is the caller's input."""
        response = await client.post("/api/v1/kit/raw", json={"name": "a\u0000b"})
        assert (response.status_code, response.headers["content-type"]) == (422, PROBLEM)
        assert response.json()["type"].endswith("/validation-error")

    async def test_a_data_error_raised_directly_maps_to_422(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """What asyncpg raises for a value it cannot even send (a number out of range) is a 422 too."""
        async with sessionmaker() as session:
            try:
                await session.execute(select(func.abs(2**70)))
            except Exception as exc:
                error = problem_for_exception(exc)
            else:
                pytest.fail("Postgres accepted a 70-bit integer")
        assert error is not None
        assert error.status == 422


class TestRaceLostToAnotherRequest:
    """Two requests creating the same name, or one deleting what the other refers to, or two locking rows
    in opposite orders: Postgres refuses the loser (SQLSTATE class 23, 40P01, 40001; PostgreSQL manual,
    Appendix A "Error Codes"). The loser's client gets a 409 to read again and retry, never a 500."""

    async def _raised(self, session: AsyncSession, statement: str) -> BaseException:
        try:
            async with session.begin_nested():
                await session.execute(text(statement))
        except Exception as exc:
            return exc
        pytest.fail(f"Postgres accepted {statement!r}")

    async def test_unique_violation_is_a_409(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        async with sessionmaker() as session:
            await session.execute(text("CREATE TEMP TABLE names (name text UNIQUE)"))
            await session.execute(text("INSERT INTO names VALUES ('web')"))
            exc = await self._raised(session, "INSERT INTO names VALUES ('web')")
        error = problem_for_exception(exc)
        assert error is not None
        assert error.status == 409

    @pytest.mark.parametrize("state", ["deadlock_detected", "serialization_failure", "foreign_key_violation"])
    async def test_lost_races_are_409s(
        self, sessionmaker: async_sessionmaker[AsyncSession], state: str
    ) -> None:
        """Raised by the server itself under the condition's name, as it would be mid-transaction."""
        async with sessionmaker() as session:
            exc = await self._raised(
                session, f"DO $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = '{state}'; END $$"
            )
        error = problem_for_exception(exc)
        assert error is not None
        assert error.status == 409

    async def test_other_errors_stay_500s(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """A bug (here an undefined table) is not dressed up as the caller's conflict."""
        async with sessionmaker() as session:
            exc = await self._raised(session, "SELECT * FROM no_such_table")
        assert problem_for_exception(exc) is None


class TestPostgresDown:
    @pytest.fixture
    async def down(self, settings_overrides: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/kepler"
        app = create_kit_app(KeplerSettings(**{**settings_overrides, "database_url": url}))
        async with service_client(app) as client:
            yield client

    async def test_api_call_is_503_with_retry_after(self, down: httpx.AsyncClient) -> None:
        """Nothing is wrong with the request: the client should come back shortly, not report a bug."""
        response = await down.post("/api/v1/kit/ok/team-a")
        assert (response.status_code, response.headers["content-type"]) == (503, PROBLEM)
        assert response.headers["retry-after"] == "5"
        assert response.json()["type"].endswith("/service-unavailable")

    async def test_readiness_is_503_json_not_500(self, down: httpx.AsyncClient) -> None:
        response = await down.get("/readyz")
        assert response.status_code == 503
        checks = {check["name"]: check["ok"] for check in response.json()["checks"]}
        assert checks == {"database": False, "redis": True}


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a Postgres whose processes are stopped."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshake; nobody ever reads or writes
        port: int = listener.getsockname()[1]
        yield port


class TestPostgresHung:
    @pytest.mark.timeout(30)  # the guard: without a connect timeout asyncpg waits 60 s
    async def test_api_call_is_a_quick_503_with_retry_after(
        self, settings_overrides: dict[str, Any], hung_port: int
    ) -> None:
        """A hung database must not hold requests until the gateway's 504: the connect wait is bounded and
        its timeout is transient, so the client gets a 503 and comes back."""
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{hung_port}/kepler"
        overrides = {**settings_overrides, "database_url": url, "db_connect_timeout_seconds": 1}
        app = create_kit_app(KeplerSettings(**overrides))
        async with service_client(app) as client:
            response = await client.post("/api/v1/kit/ok/team-a")
        assert (response.status_code, response.headers["content-type"]) == (503, PROBLEM)
        assert response.headers["retry-after"] == "5"

    async def test_a_statement_past_the_command_timeout_is_a_503(self, database_url: str) -> None:
        """A statement cut off by the engine's `command_timeout` is the database's fault: come back later."""
        engine = create_engine(database_url, command_timeout=0.2)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("select pg_sleep(10)"))
        except Exception as exc:
            error = problem_for_exception(exc)
        else:
            pytest.fail("the statement outlived the command timeout")
        finally:
            await engine.dispose()
        assert error is not None
        assert error.status == 503

    def test_a_pool_wait_that_ran_out_is_a_503(self) -> None:
        """Every pooled connection busy past `pool_timeout` (SQLAlchemy's TimeoutError): back off."""
        error = problem_for_exception(PoolTimeout("QueuePool limit reached"))
        assert error is not None
        assert error.status == 503


class TestRedisDownAfterCommit:
    async def test_committed_change_succeeds_and_other_callbacks_run(
        self,
        settings_overrides: dict[str, Any],
        sessionmaker: async_sessionmaker[AsyncSession],
        session: AsyncSession,
    ) -> None:
        """The row is durable, so the answer is 201; the sweeper re-creates the job the enqueue lost."""
        failures = REGISTRY.get_sample_value(
            "kepler_after_commit_failures_total", {"kind": "enqueue", "name": "activate"}
        )
        app = create_kit_app(KeplerSettings(**settings_overrides))
        unreachable = ArqRedis(host="127.0.0.1", port=closed_port())
        try:
            async with service_client(app, sessionmaker=sessionmaker, arq=unreachable) as client:
                response = await client.post("/api/v1/kit/notify/redis-down")
        finally:
            await unreachable.aclose()
        assert response.status_code == 201, response.text
        assert await session.scalar(select(func.count()).select_from(models.Namespace)) == 1
        assert "redis-down" in NOTIFIED
        after = REGISTRY.get_sample_value(
            "kepler_after_commit_failures_total", {"kind": "enqueue", "name": "activate"}
        )
        assert (after or 0) == (failures or 0) + 1
