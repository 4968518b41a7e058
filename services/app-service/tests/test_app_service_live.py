"""The app list shows live rollout state kept by the watch, without calling Kubernetes per request."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.kube.live import LiveStatus
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import cluster_registry
from kepler_kubefake import KubeFake

from .test_app_service_deployments import BASE, GOOD, cluster_at, deploy, make_app


@pytest.fixture
async def fake() -> AsyncIterator[KubeFake]:
    async with KubeFake.start(ready_delay=0.05, time_scale=0.002, bookmark_interval=0.05) as server:
        yield server


async def listed(client: httpx.AsyncClient) -> dict[str, Any]:
    items = (await client.get("/api/v1/namespaces/team-a/apps")).json()["items"]
    app: dict[str, Any] = items[0]
    return app


async def test_live_status_follows_the_cluster(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake: KubeFake,
    worker: Any,
    settings_overrides: dict[str, Any],
) -> None:
    await cluster_at(session, fake.url)
    await make_app(client)
    settings = AppServiceSettings(**settings_overrides, watch_timeout_seconds=1)
    worker.settings, worker.clients = settings, {"clusters": cluster_registry(settings)}
    await deploy(client, GOOD)
    await worker.run()
    await session.commit()

    registry = cluster_registry(settings)
    live = LiveStatus(sessionmaker, registry)
    await live.rescan()  # starts one watch per cluster; the test's single connection does the writes in turn

    async def eventually(check: Any) -> None:
        for _ in range(200):
            await live.flush()
            if check(await listed(client)):
                return
            await asyncio.sleep(0.02)

    try:
        await eventually(lambda app: app["live"].get("rollout") == "complete")
        app = await listed(client)
        assert app["live"] == {
            **app["live"],
            "rollout": "complete",
            "release": "1",
            "desired": 2,
            "available": 2,
        }
        assert app["current_release"] == 1
        calls = len(fake.requests)
        await client.get("/api/v1/namespaces/team-a/apps")
        assert len(fake.requests) == calls  # listing never asks the cluster

        assert (await client.post(f"{BASE}/scale", json={"replicas": 3})).status_code == 204
        await eventually(lambda app: app["live"].get("desired") == 3)
        assert (await listed(client))["live"]["desired"] == 3
    finally:
        await live.stop()
        await registry.close()
        await worker.clients["clusters"].close()
