"""Deploying onto a cluster that behaves like a real one (contracts.md §5, "Real-cluster behaviours"):
expired watches, objects the API server refuses, pods that look healthy until they crash."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_db import Cluster
from kepler_kubefake import KubeFake, WatchGone

BASE = "/api/v1/namespaces/team-a/apps/web"
GOOD: dict[str, Any] = {"image": "registry.example.com/team/web:1", "replicas": 2}


@pytest.fixture
async def web(client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake) -> None:
    session.add(Cluster(name="test", api_url=fake.url))
    await session.flush()
    namespace = {"name": "team-a", "cluster": "test"}
    assert (await client.post("/api/v1/namespaces", json=namespace)).status_code == 201
    app = {"name": "web", "git_url": "https://g.example/web.git", "ports": [{"name": "http", "port": 8080}]}
    assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201


async def deploy(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post(f"{BASE}/deployments", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def state(client: httpx.AsyncClient, deployment_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{BASE}/deployments/{deployment_id}")).json()
    return body


def image(fake: KubeFake) -> str | None:
    deployment = fake.get("Deployment", "web", "team-a")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"] if deployment else None


@pytest.mark.usefixtures("web")
class TestExpiredWatches:
    async def test_a_compacted_history_does_not_make_the_runner_spin(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """After a compaction every version handed out before it is expired, the Deployment's own
        included: resuming from it answered 410 again, GET→watch hundreds of times a second. The runner
        resumes from a LIST's version (API concepts, "Efficient detection of changes"), so the requests
        it sends while the rollout waits stay a handful per watch window."""
        await deploy(client, GOOD)
        await deployer.run()
        fake.set_pod_behaviour("team-a", "web", "neverready")
        waiting = await deploy(
            client, {"image": "registry.example.com/team/web:2", "progress_deadline_seconds": 1500}
        )
        run = asyncio.create_task(deployer.run())
        await fake.wait_for(lambda: image(fake) == "registry.example.com/team/web:2", within=30)
        before = len(fake.requests)
        fake.compact()
        fake.inject(WatchGone(times=1, path="/deployments"))  # the watch open now expires too
        await asyncio.sleep(1.5)  # 1.5 watch windows (watch_timeout_seconds=1)
        sent = [r for r in fake.requests[before:] if "/deployments" in r.path]
        assert len(sent) <= 12, [(r.method, r.path, r.query) for r in sent]
        fake.set_pod_behaviour("team-a", "web", None)  # its pods become ready: the runner still follows
        await run
        assert (await state(client, waiting))["status"] == "succeeded"
