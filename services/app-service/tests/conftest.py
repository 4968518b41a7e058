from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.app import create_app
from kepler_app_service.clusters.clients import cluster_registry
from kepler_app_service.context import AppWorker, clients_of
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import FUNCTIONS, sweeps
from kepler_db import Cluster, User
from kepler_kit.testing.identities import Minter, make_user
from kepler_kit.testing.services import run_burst_worker, service_client
from kepler_kube.registry import ClusterRegistry
from kepler_kubefake import KubeFake


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    """Every app-service test's settings: a stabilisation window of 0.2 s, not 10 s, after each rollout."""
    return {**settings_overrides, "rollout_stable_seconds": 0.2}


@pytest.fixture
async def admin(session: AsyncSession) -> User:
    return await make_user(session, "admin@example.com", is_admin=True)


@pytest.fixture
async def anonymous_client(
    settings_overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(AppServiceSettings(**settings_overrides))
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        yield client


@pytest.fixture
async def client(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    minter: Minter,
    admin: User,
) -> AsyncIterator[httpx.AsyncClient]:
    """A platform admin calling through the gateway."""
    app = create_app(AppServiceSettings(**settings_overrides))
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        client.headers.update(minter.identity(admin, "app-service"))
        yield client


class Worker:
    """Runs app-service's jobs in burst mode against the test's transaction."""

    def __init__(
        self, redis_url: str, queue_name: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.redis_url, self.queue_name, self.sessionmaker = redis_url, queue_name, sessionmaker
        self.settings: AppServiceSettings | None = None
        self.clients: dict[str, AppWorker] = {}
        self.sweeps = sweeps(AppServiceSettings())

    def open_clusters(self, settings: AppServiceSettings) -> ClusterRegistry:
        """Gives the jobs the deployment runner's cluster clients; the caller closes the registry."""
        clusters = cluster_registry(settings)
        self.settings, self.clients = settings, clients_of(AppWorker(settings=settings, clusters=clusters))
        return clusters

    async def run(self) -> int:

        return await run_burst_worker(
            FUNCTIONS,
            redis_url=self.redis_url,
            queue_name=self.queue_name,
            sessionmaker=self.sessionmaker,
            sweeps=self.sweeps,
            service="app-service",
            settings=self.settings,
            clients=self.clients,
        )


@pytest.fixture
def worker(redis_url: str, queue_name: str, sessionmaker: async_sessionmaker[AsyncSession]) -> Worker:
    return Worker(redis_url, queue_name, sessionmaker)


@pytest.fixture
async def fake() -> AsyncIterator[KubeFake]:
    """A cluster with a real one's behaviours, whose time runs 500x faster (a 600 s progress deadline is
    1.2 s, CrashLoopBackOff's 10 s back-off 20 ms): rollouts a test can wait for. Containers take 50 ms to
    start (not the default 2 s, which would be 4 ms here: slow enough for a follower to see pods start)."""
    async with KubeFake.start(ready_delay=0.05, time_scale=0.002, bookmark_interval=0.05) as server:
        yield server


@pytest.fixture
async def web(client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake) -> None:
    """App `web` in namespace `team-a`, on the `fake` cluster (named `test`)."""
    session.add(Cluster(name="test", api_url=fake.url))
    await session.flush()
    namespace = {"name": "team-a", "cluster": "test"}
    assert (await client.post("/api/v1/namespaces", json=namespace)).status_code == 201
    app = {"name": "web", "git_url": "https://g.example/web.git", "ports": [{"name": "http", "port": 8080}]}
    assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201


@pytest.fixture
def settings(settings_overrides: dict[str, Any]) -> AppServiceSettings:
    return AppServiceSettings(**settings_overrides, watch_timeout_seconds=1, crash_loop_restarts=2)


@pytest.fixture
async def deployer(worker: Any, settings: AppServiceSettings) -> AsyncIterator[Any]:
    """The worker with the deployment runner's cluster clients."""
    clusters = worker.open_clusters(settings)
    yield worker
    await clusters.close()
