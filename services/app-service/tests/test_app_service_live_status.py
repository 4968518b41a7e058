"""Live status (`app.live`) under faults: a cluster whose credentials do not load, Postgres errors, and
Deployments deleted while nobody watched. Driven over HTTP against the Kubernetes contract fake."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from kepler_app_service.clusters.clients import cluster_registry
from kepler_app_service.live.watch import Backoff, LiveStatus, lease_name
from kepler_app_service.settings import AppServiceSettings
from kepler_db import Cluster
from kepler_kit.leases import APPLICATION_NAME, Leases, holder
from kepler_kit.metrics import REGISTRY
from kepler_kube.registry import ClusterRegistry
from kepler_kubefake import Forbid, KubeFake

APPS = "/api/v1/namespaces/team-a/apps"
NOT_A_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
QUICK = Backoff(first=0.01, cap=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[KubeFake]:
    async with KubeFake.start(ready_delay=0.0, time_scale=0.002, bookmark_interval=0.05) as server:
        yield server


@pytest.fixture
def settings(settings_overrides: dict[str, Any]) -> AppServiceSettings:
    return AppServiceSettings(**settings_overrides, watch_timeout_seconds=1)


@pytest.fixture
async def registry(settings: AppServiceSettings) -> AsyncIterator[ClusterRegistry]:
    """The worker's registry, which the live status shares."""
    registry = cluster_registry(settings)
    yield registry
    await registry.close()


@pytest.fixture
async def web(
    client: httpx.AsyncClient,
    session: AsyncSession,
    fake: KubeFake,
    worker: Any,
    settings: AppServiceSettings,
) -> AsyncIterator[None]:
    """`team-a/web` rolled out to the fake's cluster `test`."""
    session.add(Cluster(name="test", api_url=fake.url))
    await session.flush()
    assert (
        await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "test"})
    ).status_code == 201
    app = {"name": "web", "git_url": "https://g.example/web.git"}
    assert (await client.post(APPS, json=app)).status_code == 201
    clusters = worker.open_clusters(settings)
    deployed = await client.post(f"{APPS}/web/deployments", json={"image": "registry.example.com/web:1"})
    assert deployed.status_code == 201, deployed.text
    await worker.run()
    await session.commit()
    yield
    await clusters.close()


async def web_live(client: httpx.AsyncClient) -> dict[str, Any]:
    items = (await client.get(APPS)).json()["items"]
    live: dict[str, Any] = items[0]["live"]
    return live


async def eventually(step: Callable[[], Awaitable[Any]], check: Callable[[], Awaitable[bool]]) -> bool:
    for _ in range(300):
        await step()
        if await check():
            return True
        await asyncio.sleep(0.02)
    return False


async def nothing() -> None:
    pass


def errors(stage: str, cluster: str = "") -> float:
    value = REGISTRY.get_sample_value("kepler_live_status_errors_total", {"stage": stage, "cluster": cluster})
    return value or 0.0


@pytest.mark.usefixtures("web")
class TestLiveStatus:
    async def test_a_cluster_whose_credentials_do_not_load_leaves_the_others_live(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
    ) -> None:
        """Building the broken cluster's client raised `ssl.SSLError` out of the rescan (and ended the
        worker's loop): no cluster got live status. Stored as before registration checked credentials."""
        session.add(Cluster(name="broken", api_url="https://127.0.0.1:9", ca_data=NOT_A_CERTIFICATE))
        await session.commit()
        live = LiveStatus(sessionmaker, registry, retry=QUICK)
        try:
            await live.rescan()

            async def complete() -> bool:
                return (await web_live(client)).get("rollout") == "complete" and "broken" in registry.health

            assert await eventually(live.flush, complete)
            broken = registry.health["broken"]
            assert not broken.ok
            assert "ca_data" in broken.detail
        finally:
            await live.stop()

    async def test_an_rbac_denial_is_reported_and_backed_off(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        fake: KubeFake,
    ) -> None:
        """Kepler may not list Deployments across the cluster (RBAC, 403): the cluster's health says the
        API server's reason, and the watch backs off (doubling) instead of retrying at once, or reading the
        Status as an empty list."""
        fake.inject(Forbid(verb="list", resource="deployments"))
        live = LiveStatus(sessionmaker, registry, retry=Backoff(first=0.2, cap=5.0))
        try:
            await live.rescan()
            await asyncio.sleep(1.0)  # tries at 0, 0.2, 0.6 s (then 1.4 s): three or four LISTs
            lists = [r for r in fake.requests if r.verb == "list" and r.path.endswith("/deployments")]
            assert 1 <= len(lists) <= 4, len(lists)
            health = registry.health["test"]
            assert not health.ok
            assert 'cannot list resource "deployments"' in health.detail
        finally:
            await live.stop()

    async def test_a_deployment_deleted_while_unwatched_is_absent_after_a_relist(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        fake: KubeFake,
    ) -> None:
        """After a restart the LIST did not return the Deployment, and the app still showed "complete"."""
        before = LiveStatus(sessionmaker, registry, retry=QUICK)
        await before.rescan()

        def rollout_is(state: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return (await web_live(client)).get("rollout") == state

            return check

        try:
            assert await eventually(before.flush, rollout_is("complete"))
        finally:
            await before.stop()  # the worker stops; someone deletes the Deployment meanwhile
        async with httpx.AsyncClient(base_url=fake.url) as kubectl:
            gone = await kubectl.delete("/apis/apps/v1/namespaces/team-a/deployments/web")
            assert gone.status_code == 200

        after = LiveStatus(sessionmaker, registry, retry=QUICK)
        try:
            await after.rescan()
            assert await eventually(after.flush, rollout_is("absent"))
        finally:
            await after.stop()

    async def test_the_rescan_loop_survives_database_errors(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        db_connection: AsyncConnection,
    ) -> None:
        """`run()` died at its first failed rescan ("Task exception was never retrieved") and live status
        froze until the worker restarted. A table that is not there is a real Postgres error here. The test's
        one connection is shared, so the loop is stopped where it waits (polled every loop turn, the test
        sees a failure counted before the loop can wake for its next try) before the test uses it again."""
        await db_connection.execute(text("ALTER TABLE clusters RENAME TO clusters_away"))
        live = LiveStatus(sessionmaker, registry, retry=QUICK)
        target = errors("rescan") + 3
        running = asyncio.create_task(live.run(rescan_seconds=3600, retry_seconds=0.01))
        for _ in range(1_000_000):
            if running.done() or errors("rescan") >= target:
                break
            await asyncio.sleep(0)
        assert not running.done()  # failed three times and still going
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await db_connection.execute(text("ALTER TABLE clusters_away RENAME TO clusters"))

        async def complete() -> bool:
            return (await web_live(client)).get("rollout") == "complete"

        try:
            await live.rescan()
            assert await eventually(live.flush, complete)
        finally:
            await live.stop()

    async def test_a_batch_that_cannot_be_written_is_kept_for_the_next_flush(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        db_connection: AsyncConnection,
    ) -> None:
        """A flush that failed during a Postgres outage dropped its batch: the app list showed the old
        release until some later change of the same Deployment."""
        live = LiveStatus(sessionmaker, registry, retry=QUICK)
        try:
            await live.rescan()

            async def listed() -> bool:  # the LIST answered: its Deployments wait to be written
                return registry.recently_reached("test")

            assert await eventually(nothing, listed)
            await db_connection.execute(text("ALTER TABLE apps RENAME TO apps_away"))
            with pytest.raises(Exception, match="apps"):
                await live.flush()
            await db_connection.execute(text("ALTER TABLE apps_away RENAME TO apps"))
            await live.flush()
            assert (await web_live(client)).get("rollout") == "complete"
        finally:
            await live.stop()

    async def test_with_leases_one_watches_and_what_it_saw_after_losing_the_lease_is_not_written(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: ClusterRegistry,
        engine: AsyncEngine,
    ) -> None:
        """Two workers' live statuses sharing a cluster: the first to rescan holds its lease and lists it.
        When its lease connection is killed, the other takes the lease over, and the first's batch, seen
        under the lease it lost, is dropped at its flush (the fence); the new holder writes the status."""
        killed = Leases(engine, identity="a", retry_seconds=3600, check_seconds=0.02)  # does not come back
        leases = [killed, Leases(engine, identity="b", retry_seconds=0.02, check_seconds=0.02)]
        first, second = (LiveStatus(sessionmaker, registry, retry=QUICK, leases=each) for each in leases)

        async def listed() -> bool:
            return registry.recently_reached("test")

        async def complete() -> bool:
            return (await web_live(client)).get("rollout") == "complete"

        try:
            await first.rescan()
            assert await eventually(nothing, listed)  # the first holds the lease: its batch waits
            await second.rescan()
            assert await held_by(sessionmaker, "a")
            await terminate(sessionmaker, "a")
            assert await eventually(nothing, lambda: held_by(sessionmaker, "b"))
            await first.flush()
            assert (await web_live(client)).get("rollout") is None
            assert await eventually(second.flush, complete)
        finally:
            for live in (first, second):
                await live.stop()
            for held in leases:
                await held.close()


async def held_by(sessionmaker: async_sessionmaker[AsyncSession], identity: str) -> bool:
    async with sessionmaker() as session:
        cluster = await session.scalar(select(Cluster).where(Cluster.name == "test"))
        assert cluster is not None
        return await holder(session, lease_name(cluster.id)) == identity


async def terminate(sessionmaker: async_sessionmaker[AsyncSession], identity: str) -> None:
    """What a `kill -9` of that worker does to its lease connection, seen from the server."""
    async with sessionmaker() as session:
        await session.execute(text("SELECT pg_stat_clear_snapshot()"))
        killed = await session.scalar(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": APPLICATION_NAME + identity},
        )
        assert killed
