"""Releases on a (fake) Kubernetes: deploy, follow, fail and roll back, supersede, survive watch faults."""

import asyncio
import base64
import json
import socket
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.clusters.clients import cluster_registry
from kepler_app_service.live.watch import LiveStatus
from kepler_app_service.releases import repository as releases_repository
from kepler_app_service.releases.imports import spec_of
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import sweeps
from kepler_db import App, AuditEvent, Cluster, Deployment, DeploymentStatus, Release, Role
from kepler_kit.errors import NotFound
from kepler_kit.jobs import WorkerContext, sweep
from kepler_kit.testing.identities import make_member, make_user
from kepler_kubefake import DropWatch, KubeFake, WatchGone

BASE = "/api/v1/namespaces/team-a/apps/web"
IMAGE = "registry.example.com/team/web"
GOOD: dict[str, Any] = {
    "image": f"{IMAGE}:1",
    "replicas": 2,
    "env": [{"name": "MODE", "value": "one"}],
    "resources": {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    },
}

# The fake runs Kubernetes time 500x faster (time_scale=0.002), so the default 600 s progress deadline is
# 1.2 s of real time, which a loaded machine can miss; tests not about deadlines give a day (173 s real).
PATIENT = {"progress_deadline_seconds": 86400}


async def cluster_at(session: AsyncSession, url: str) -> None:
    session.add(Cluster(name="test", api_url=url))
    await session.flush()


async def make_app(client: httpx.AsyncClient) -> None:
    assert (
        await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "test"})
    ).status_code == 201
    app = {"name": "web", "git_url": "https://g.example/web.git", "ports": [{"name": "http", "port": 8080}]}
    assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201


@pytest.fixture
async def web(client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake) -> None:
    await cluster_at(session, fake.url)
    await make_app(client)


async def deploy(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{BASE}/deployments", json=body)
    assert response.status_code == 201, response.text
    deployment: dict[str, Any] = response.json()
    assert response.headers["location"].endswith(f"/deployments/{deployment['id']}")
    return deployment


async def state(client: httpx.AsyncClient, deployment_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{BASE}/deployments/{deployment_id}")).json()
    return body


def container(fake: KubeFake) -> dict[str, Any]:
    deployment = fake.get("Deployment", "web", "team-a")
    assert deployment is not None
    first: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return first


@pytest.mark.usefixtures("web")
class TestDeploy:
    async def test_rolls_out_with_server_side_apply(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        created = await deploy(client, GOOD)
        assert (created["status"], created["release"]) == ("pending", 1)
        assert await deployer.run() >= 1
        done = await state(client, created["id"])
        assert (done["status"], done["reason"]) == ("succeeded", "RolledOut")
        assert done["replicas"]["available"] == 2
        assert container(fake)["image"] == f"{IMAGE}:1"
        assert container(fake)["env"] == [{"name": "MODE", "value": "one"}]
        applies = [r for r in fake.requests if r.method == "PATCH" and "deployments/web" in r.path]
        assert {(r.content_type, r.field_manager) for r in applies} == {
            ("application/apply-patch+yaml", "kepler")
        }
        status = (await client.get(f"{BASE}/status")).json()
        assert status["current_release"] == 1

    async def test_events_stream_then_end_and_resume(self, client: httpx.AsyncClient, deployer: Any) -> None:
        created = await deploy(client, GOOD)
        await deployer.run()
        response = await client.get(f"{BASE}/deployments/{created['id']}/events")
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in response.text.split("\n\n") if f.startswith("id:")]
        statuses = [json.loads(f.split("data: ", 1)[1])["status"] for f in frames if "event: status" in f]
        assert statuses == ["pending", "applying", "progressing", "succeeded"]
        assert any("event: replicas" in f for f in frames)
        middle = frames[1].split("\n")[0].removeprefix("id: ")
        resumed = await client.get(
            f"{BASE}/deployments/{created['id']}/events", headers={"Last-Event-ID": middle}
        )
        assert resumed.text.count("id: ") == len(frames) - 2

    async def test_reconnecting_after_the_last_event_of_a_finished_deployment_ends(
        self, client: httpx.AsyncClient, deployer: Any
    ) -> None:
        """A client that already received the final status reconnects with its id: the stream used to wait
        for a final event that would never come again, sending keep-alives forever. (The suite's timeout
        fails this test if the stream does not end.)"""
        created = await deploy(client, GOOD)
        await deployer.run()
        full = await client.get(f"{BASE}/deployments/{created['id']}/events")
        last = [f for f in full.text.split("\n\n") if f.startswith("id:")][-1].split("\n")[0]
        resumed = await client.get(
            f"{BASE}/deployments/{created['id']}/events", headers={"Last-Event-ID": last.removeprefix("id: ")}
        )
        assert resumed.status_code == 200
        assert resumed.text == ""

    @pytest.mark.parametrize("cursor", ["99999999999999999999999", str(2**63), "abc", "-5"])
    async def test_a_last_event_id_out_of_range_is_422(
        self, client: httpx.AsyncClient, deployer: Any, cursor: str
    ) -> None:
        """An id beyond Postgres' bigint used to answer 200 and then break the connection mid-stream."""
        created = await deploy(client, GOOD)
        await deployer.run()
        response = await client.get(
            f"{BASE}/deployments/{created['id']}/events", headers={"Last-Event-ID": cursor}
        )
        assert (response.status_code, response.headers["content-type"]) == (422, "application/problem+json")
        assert response.json()["errors"][0]["loc"] == ["header", "last-event-id"]

    async def test_events_stream_sends_pods(self, client: httpx.AsyncClient, deployer: Any) -> None:
        """The stream promises `pods` events: a follower sees the app's pods, and the last snapshot
        before the final status is the rolled-out set. The worker records them in Postgres, so the API
        process serving the stream relays them (here after the fact, as a reconnecting client would)."""
        created = await deploy(client, {**GOOD, **PATIENT})
        await deployer.run()
        response = await client.get(f"{BASE}/deployments/{created['id']}/events")
        frames = [f for f in response.text.split("\n\n") if f.startswith("id:")]
        kinds = [f.split("\n")[1].removeprefix("event: ") for f in frames]
        assert "pods" in kinds
        assert kinds[-1] == "status"
        last = max(i for i, kind in enumerate(kinds) if kind == "pods")
        pods = json.loads(frames[last].split("data: ", 1)[1])["pods"]
        assert len(pods) == 2
        assert all(
            (p["phase"], p["ready"], p["release"], p["restarts"]) == ("Running", True, 1, 0) for p in pods
        )
        assert all(p["name"].startswith("web-") for p in pods)

    async def test_second_run_of_the_same_job_changes_nothing(
        self, client: httpx.AsyncClient, deployer: Any, arq: ArqRedis, queue_name: str, fake: KubeFake
    ) -> None:
        created = await deploy(client, GOOD)
        await deployer.run()
        await arq.enqueue_job("run_deployment", created["id"], "0", _queue_name=queue_name)
        applies_before = len([r for r in fake.requests if r.method == "PATCH"])
        await deployer.run()
        assert len([r for r in fake.requests if r.method == "PATCH"]) == applies_before
        assert (await state(client, created["id"]))["status"] == "succeeded"

    async def test_newer_deploy_supersedes_pending_one(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        first = await deploy(client, GOOD)
        second = await deploy(client, {**GOOD, "image": f"{IMAGE}:2"})
        await deployer.run()
        assert (await state(client, first["id"]))["status"] == "superseded"
        assert (await state(client, second["id"]))["status"] == "succeeded"
        assert container(fake)["image"] == f"{IMAGE}:2"


@pytest.mark.usefixtures("web")
class TestRollback:
    async def test_failed_rollout_rolls_back_image_env_and_resources(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake, session: AsyncSession
    ) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        broken = {
            "image": f"{IMAGE}-crashloop:2",
            "env": [{"name": "MODE", "value": "two"}],
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
        }
        failing = await deploy(client, broken)
        await deployer.run()
        failed = await state(client, failing["id"])
        assert failed["status"] == "rolled_back"
        assert failed["reason"] in ("CrashLoop", "ProgressDeadlineExceeded")
        assert "rolled back to release 1" in failed["message"]
        latest = (await client.get(f"{BASE}/deployments")).json()["items"][0]
        assert (latest["release"], latest["automatic"], latest["status"]) == (1, True, "succeeded")
        assert container(fake)["image"] == f"{IMAGE}:1"
        assert container(fake)["env"] == [{"name": "MODE", "value": "one"}]
        assert container(fake)["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
        assert (await client.get(f"{BASE}/status")).json()["current_release"] == 1

    async def test_the_stream_tells_a_follower_of_the_automatic_rollback(
        self, client: httpx.AsyncClient, deployer: Any
    ) -> None:
        """The auto_rollback event is recorded after the final status, in the same transaction: the
        stream used to end at the status and a follower never heard of the rollback."""
        await deploy(client, GOOD)
        await deployer.run()
        failing = await deploy(client, {"image": f"{IMAGE}-crashloop:2"})
        await deployer.run()
        response = await client.get(f"{BASE}/deployments/{failing['id']}/events")
        frames = [f for f in response.text.split("\n\n") if f.startswith("id:")]
        kinds = [f.split("\n")[1].removeprefix("event: ") for f in frames]
        assert kinds[-2:] == ["status", "auto_rollback"]

    async def test_failure_without_auto_rollback_stays_failed(
        self, client: httpx.AsyncClient, deployer: Any
    ) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        assert (await client.patch(f"{BASE}/settings", json={"auto_rollback": False})).status_code == 200
        failing = await deploy(client, {"image": f"{IMAGE}-crashloop:2"})
        await deployer.run()
        assert (await state(client, failing["id"]))["status"] == "failed"

    async def test_rollback_to_release_restores_it_whole(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        await deploy(
            client, {"image": f"{IMAGE}:2", "env": [{"name": "MODE", "value": "two"}], "replicas": 1}
        )
        await deployer.run()
        assert container(fake)["env"] == [{"name": "MODE", "value": "two"}]
        response = await client.post(f"{BASE}/rollback", json={"to_release": 1})
        assert response.status_code == 201, response.text
        await deployer.run()
        assert (await state(client, response.json()["id"]))["status"] == "succeeded"
        assert container(fake)["image"] == f"{IMAGE}:1"
        assert container(fake)["env"] == [{"name": "MODE", "value": "one"}]
        deployment = fake.get("Deployment", "web", "team-a")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 2
        diff = (await client.get(f"{BASE}/releases/2/diff", params={"against": 1})).json()
        assert {c["path"] for c in diff["changes"]} >= {"image", "replicas", "env"}


DERIVED_ACTIONS = {
    "restart": ("restart", None),
    "config change": ("releases", {"env": [{"name": "MODE", "value": "three"}]}),
    "scale with deploy": ("deployments", {"replicas": 3}),
    "image-less deploy": ("deployments", {"args": ["-g", "daemon off;"]}),
}


@pytest.mark.usefixtures("web")
class TestDerivedReleasesAfterRollback:
    @pytest.mark.parametrize("action", list(DERIVED_ACTIONS))
    async def test_starts_from_the_rolled_back_release_not_the_latest(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake, action: str
    ) -> None:
        """A rollback moves the current release back; the next derived release must build on it, else
        the next restart or change silently rolls the bad release out again."""
        await deploy(client, {**GOOD, "image": "nginx:1.27", **PATIENT})
        await deployer.run()
        await deploy(client, {"image": "nginx:1.28"})
        await deployer.run()
        rollback = await client.post(f"{BASE}/rollback", json={})
        assert rollback.status_code == 201, rollback.text
        await deployer.run()
        assert (await client.get(f"{BASE}/status")).json()["current_release"] == 1

        path, body = DERIVED_ACTIONS[action]
        response = await client.post(f"{BASE}/{path}", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["release"] == 3
        await deployer.run()
        release = (await client.get(f"{BASE}/releases/3")).json()
        assert release["spec"]["image"] == "nginx:1.27"
        assert release["spec"]["resources"]["requests"] == GOOD["resources"]["requests"]
        assert (await state(client, response.json()["id"]))["status"] == "succeeded"
        assert container(fake)["image"] == "nginx:1.27"


class TestImageOnlyApp:
    async def test_created_without_git_url_and_deployed(
        self, client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake, deployer: Any
    ) -> None:
        """An app that only ever deploys images has no repository; asking for one blocked it."""
        await cluster_at(session, fake.url)
        assert (
            await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "test"})
        ).status_code == 201
        created = await client.post("/api/v1/namespaces/team-a/apps", json={"name": "web"})
        assert created.status_code == 201, created.text
        assert created.json()["git_url"] is None
        deployment = await deploy(client, {"image": "nginx:1.27", **PATIENT})
        await deployer.run()
        assert (await state(client, deployment["id"]))["status"] == "succeeded"
        assert container(fake)["image"] == "nginx:1.27"
        assert (await client.get(BASE)).json()["git_url"] is None


@pytest.mark.usefixtures("web")
class TestWatchFaults:
    async def test_gone_and_dropped_watches_still_complete(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        fake.inject(WatchGone(times=1, path="deployments"))
        fake.inject(DropWatch(after_events=1, times=2, path="deployments"))
        created = await deploy(client, GOOD)
        await deployer.run()
        assert (await state(client, created["id"]))["status"] == "succeeded"
        watches = [r for r in fake.requests if r.method == "GET" and "watch" in str(r.query)]
        assert len(watches) >= 2


class TestBadInput:
    @pytest.mark.usefixtures("web")
    async def test_invalid_specs_are_422_and_nothing_applied(
        self, client: httpx.AsyncClient, fake: KubeFake, session: AsyncSession
    ) -> None:
        bad = [
            {"image": "Bad Image!"},
            {**GOOD, "resources": {"limits": {"cpu": "500x"}}},
            {**GOOD, "env": [{"name": "1 BAD", "value": "x"}]},
            {**GOOD, "ports": [{"name": "http", "port": 70000}]},
            {**GOOD, "probes": {"readiness": {"check": {"type": "http", "port": 0}}}},
            {**GOOD, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
            {**GOOD, "replicas": -1},
            {"image": f"{IMAGE}@sha256:{'a' * 64}", "image_digest": f"sha256:{'b' * 64}"},  # which runs?
        ]
        for body in bad:
            response = await client.post(f"{BASE}/deployments", json=body)
            assert response.status_code == 422, body
            assert response.json()["errors"], body
        assert await session.scalar(select(func.count()).select_from(Release)) == 0
        assert fake.get("Deployment", "web", "team-a") is None

    @pytest.mark.usefixtures("web")
    async def test_first_deploy_needs_an_image(self, client: httpx.AsyncClient) -> None:
        assert (await client.post(f"{BASE}/deployments", json={"replicas": 2})).status_code == 400
        assert (await client.post(f"{BASE}/deployments", json={"release": 9})).status_code == 404


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TestClusterDown:
    async def test_503_then_proceeds_when_the_cluster_returns(
        self,
        client: httpx.AsyncClient,
        deployer: Any,
        session: AsyncSession,
        settings: AppServiceSettings,
        arq: ArqRedis,
        queue_name: str,
    ) -> None:
        port = free_port()
        await cluster_at(session, f"http://127.0.0.1:{port}")
        await make_app(client)
        response = await client.post(f"{BASE}/deployments", json=GOOD)
        assert response.status_code == 503
        problem = response.json()
        assert problem["cluster"] == "test"
        deployment_id = problem["deployment"]
        await deployer.run()
        waiting = await state(client, deployment_id)
        assert (waiting["status"], waiting["reason"]) == ("pending", "ClusterUnavailable")

        async with KubeFake.start(port=port, ready_delay=0.05, time_scale=0.002) as fake:
            quick = AppServiceSettings(**{**settings.model_dump(), "deploy_stale_seconds": 0.001})
            ctx: WorkerContext = {
                "redis": arq,
                "queue_name": queue_name,
                "sessionmaker": deployer.sessionmaker,
            }
            ctx["sweeps"] = sweeps(quick)
            assert await sweep(ctx) == 1
            await deployer.run()
            assert (await state(client, deployment_id))["status"] == "succeeded"
            assert fake.get("Deployment", "web", "team-a") is not None
        row = await session.get(Deployment, deployment_id)
        assert row is not None
        assert row.status is DeploymentStatus.succeeded


@pytest.mark.usefixtures("web")
class TestDayTwo:
    async def test_scale_applies_now_and_later_releases_keep_it(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake, session: AsyncSession
    ) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        assert (await client.post(f"{BASE}/scale", json={"replicas": 4})).status_code == 204
        live = fake.get("Deployment", "web", "team-a")
        assert live is not None
        assert live["spec"]["replicas"] == 4
        change = await client.post(f"{BASE}/releases", json={"env": [{"name": "MODE", "value": "three"}]})
        assert change.status_code == 201
        await deployer.run()
        release = (await client.get(f"{BASE}/releases/2")).json()
        assert (release["cause"], release["spec"]["replicas"]) == ("change", 4)
        assert release["spec"]["resources"] == GOOD["resources"]
        assert container(fake)["env"] == [{"name": "MODE", "value": "three"}]

    async def test_a_rollback_keeps_the_scale(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """A rollback brings back a release's code and configuration, not its replica count (`kubectl
        rollout undo` copies only the pod template): scaled to 5 in an incident, an app rolled back went to
        the old release's 2. A deploy that names replicas puts the count back in the release."""
        await deploy(client, GOOD)
        await deployer.run()
        await deploy(client, {"image": f"{IMAGE}:2"})
        await deployer.run()
        assert (await client.post(f"{BASE}/scale", json={"replicas": 5})).status_code == 204
        assert (await client.post(f"{BASE}/rollback", json={})).status_code == 201
        await deployer.run()
        live = fake.get("Deployment", "web", "team-a")
        assert live is not None
        assert (container(fake)["image"], live["spec"]["replicas"]) == (f"{IMAGE}:1", 5)
        await deploy(client, {"image": f"{IMAGE}:3", "replicas": 3})
        await deployer.run()
        assert (fake.get("Deployment", "web", "team-a") or {})["spec"]["replicas"] == 3

    async def test_restart_is_a_new_release_with_a_new_template(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """A restart keeps everything, the replica count set by a scale included (it must not undo it)."""
        await deploy(client, {**GOOD, **PATIENT})
        await deployer.run()
        assert (await client.post(f"{BASE}/scale", json={"replicas": 3})).status_code == 204
        restarted = await client.post(f"{BASE}/restart")
        assert restarted.status_code == 201
        await deployer.run()
        assert (await state(client, restarted.json()["id"]))["status"] == "succeeded"
        live = fake.get("Deployment", "web", "team-a")
        assert live is not None
        assert live["spec"]["replicas"] == 3
        annotations = live["spec"]["template"]["metadata"]["annotations"]
        assert "kubectl.kubernetes.io/restartedAt" in annotations
        assert container(fake)["env"] == [{"name": "MODE", "value": "one"}]

    async def test_restart_after_the_deployment_was_deleted_keeps_the_replica_count(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """Someone deleted the Deployment in the cluster: the restart must bring back the current release's
        replica count (2), not a default of 1."""
        await deploy(client, {**GOOD, **PATIENT})
        await deployer.run()
        async with httpx.AsyncClient(base_url=fake.url) as kube:
            deleted = await kube.delete("/apis/apps/v1/namespaces/team-a/deployments/web")
            assert deleted.status_code == 200, deleted.text
        assert fake.get("Deployment", "web", "team-a") is None
        restarted = await client.post(f"{BASE}/restart")
        assert restarted.status_code == 201, restarted.text
        release = (await client.get(f"{BASE}/releases/2")).json()
        assert (release["cause"], release["spec"]["replicas"]) == ("restart", 2)
        await deployer.run()
        live = fake.get("Deployment", "web", "team-a")
        assert live is not None
        assert live["spec"]["replicas"] == 2

    async def test_pods_events_and_deleting_only_own_pods(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        pods = (await client.get(f"{BASE}/pods")).json()["items"]
        assert len(pods) == 2
        assert all(p["ready"] and p["current"] and p["release"] == 1 for p in pods)
        assert pods[0]["containers"][0]["image"] == f"{IMAGE}:1"
        events = (await client.get(f"{BASE}/events")).json()["items"]
        assert any(e["reason"] == "ScalingReplicaSet" for e in events)
        assert (await client.delete(f"{BASE}/pods/not-a-pod-of-web")).status_code == 404
        assert (await client.delete(f"{BASE}/pods/{pods[0]['name']}")).status_code == 204
        # Deletion is graceful: right after the DELETE the pod is terminating, or already gone once its
        # kubelet saw it stop (pkg/registry/core/pod/strategy.go, CheckGracefulDelete).
        left = fake.get("Pod", pods[0]["name"], "team-a")
        assert left is None or left["metadata"].get("deletionTimestamp")

    async def test_scale_audit_records_the_count_before(
        self, client: httpx.AsyncClient, deployer: Any, session: AsyncSession
    ) -> None:
        """The audit row answers "who changed it from what": before the first scale, the release's count."""
        await deploy(client, GOOD)
        await deployer.run()
        for replicas in (4, 1):
            assert (await client.post(f"{BASE}/scale", json={"replicas": replicas})).status_code == 204
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "app.scale").order_by(AuditEvent.occurred_at)
        )
        assert [row.detail for row in rows] == [
            {"replicas": 4, "before": 2},
            {"replicas": 1, "before": 4},
        ]

    async def test_pods_are_paged_by_name(self, client: httpx.AsyncClient, deployer: Any) -> None:
        """Like every other list: {items, next_cursor}, following the cursor yields each pod once."""
        await deploy(client, {**GOOD, "replicas": 3, **PATIENT})
        await deployer.run()
        first = (await client.get(f"{BASE}/pods", params={"limit": 2})).json()
        assert len(first["items"]) == 2
        rest = (await client.get(f"{BASE}/pods", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert rest["next_cursor"] is None
        names = [p["name"] for p in first["items"] + rest["items"]]
        assert names == sorted(names)
        assert len(set(names)) == 3

    async def test_changes_need_a_first_deploy(self, client: httpx.AsyncClient) -> None:
        assert (await client.post(f"{BASE}/restart")).status_code == 409
        assert (await client.post(f"{BASE}/scale", json={"replicas": 2})).status_code == 409
        assert (await client.post(f"{BASE}/rollback", json={})).status_code == 409


def kube_event(name: str, involved: str, kind: str = "Pod", **times: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "team-a"},
        "involvedObject": {"kind": kind, "name": involved, "namespace": "team-a"},
        "reason": name,
        "message": f"{name} happened",
        "type": "Normal",
        **times,
    }


def replica_set_of(app: str, name: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "pod-template-hash": "h"}
    container = {"name": app, "image": "registry.example.com/web:1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "team-a", "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@pytest.mark.usefixtures("web")
class TestKubeEvents:
    async def test_newest_first_by_last_seen_and_paged(
        self, client: httpx.AsyncClient, fake: KubeFake
    ) -> None:
        """Whichever field carries an event's last sighting (core/v1 lastTimestamp, events.k8s.io
        eventTime or series.lastObservedTime), the newest comes first, across pages; other apps'
        events (`webx`, and `web-x`, whose objects' names start like web's) are not the app's."""
        fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        for app, replica_set in (("web", "web-7d9f"), ("web-x", "web-x-5c6d")):
            fake.create(replica_set_of(app, replica_set))
        fake.create(kube_event("a-oldest", "web-7d9f-abcde", lastTimestamp="2026-01-01T10:00:00Z"))
        fake.create(
            kube_event(
                "b-newest",
                "web-7d9f",
                "ReplicaSet",
                eventTime="2026-01-01T10:00:05.000000Z",
                series={"count": 3, "lastObservedTime": "2026-01-01T12:00:00.000000Z"},
                reportingComponent="kubelet",
                reportingInstance="node",
                action="Pulling",
            )
        )
        fake.create(
            kube_event(
                "c-middle",
                "web",
                "Deployment",
                eventTime="2026-01-01T11:00:00.500000Z",
                reportingComponent="kubelet",
                reportingInstance="node",
                action="Scaling",
            )
        )
        fake.create(kube_event("d-other-app", "webx-1", lastTimestamp="2026-01-01T13:00:00Z"))
        fake.create(kube_event("e-other-app", "web-x-5c6d-fghij", lastTimestamp="2026-01-01T13:00:00Z"))
        first = (await client.get(f"{BASE}/events", params={"limit": 2})).json()
        rest = (
            await client.get(f"{BASE}/events", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        assert rest["next_cursor"] is None
        events = first["items"] + rest["items"]
        assert [e["reason"] for e in events] == ["b-newest", "c-middle", "a-oldest"]
        assert events[0]["last_seen"] == "2026-01-01T12:00:00Z"
        assert events[0]["count"] == 3

    async def test_crafted_cursors_are_400(self, client: httpx.AsyncClient, fake: KubeFake) -> None:
        """Cursors decoding to the wrong shape (a dict, a number, a naive time) are the client's error."""
        fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        crafted: list[list[Any]] = [["x"], [{}], [1, "a"], ["2026-01-01T00:00:00", "a"]]
        for key in crafted:
            cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")
            for path in ("events", "pods"):
                response = await client.get(f"{BASE}/{path}", params={"cursor": cursor})
                if path == "pods" and key == ["x"]:
                    assert response.status_code == 200  # a name: a valid pods cursor
                    continue
                assert response.status_code == 400, (path, key, response.text)


async def listed(client: httpx.AsyncClient) -> dict[str, Any]:
    items = (await client.get("/api/v1/namespaces/team-a/apps")).json()["items"]
    app: dict[str, Any] = items[0]
    return app


async def test_live_status_follows_the_cluster(
    fake: KubeFake,
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Any,
    settings_overrides: dict[str, Any],
) -> None:
    await cluster_at(session, fake.url)
    await make_app(client)
    settings = AppServiceSettings(**settings_overrides, watch_timeout_seconds=1)
    clusters = worker.open_clusters(settings)
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
        await clusters.close()


def legacy_namespace(fake: KubeFake) -> None:
    """The namespace legacy Deployments run in, with the Secret their env refers to: without it a real
    kubelet (and the fake) keeps the pods in CreateContainerConfigError, and a deployment rightly fails."""
    fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "team-a"}}
    fake.create({**secret, "stringData": {"k": "v"}})


def legacy_deployment(name: str, image: str = "registry.example.com/legacy:7") -> dict[str, Any]:
    labels = {"app": name}
    container = {
        "name": name,
        "image": image,
        "env": [
            {"name": "A", "value": "1"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        "resources": {"limits": {"memory": "128Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team-a", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def test_import_names_unnamed_ports_after_the_service_port_in_front_else_by_number() -> None:
    """A container port needs no name (only a Service's ports do), but Kepler's Service targets ports by name:
    an unnamed one takes the name of the Service port that targets it (by number) when that name is a valid
    IANA_SVC_NAME (a Service port name is a DNS label of 63), else `port-<number>`, with the protocol when
    not TCP. Safe to add: apply merges container ports by containerPort and protocol."""
    deployment = legacy_deployment("shop")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8080},
        {"containerPort": 9090},
        {"containerPort": 53, "protocol": "UDP"},
        {"containerPort": 7000},
    ]
    svc = {
        "spec": {
            "ports": [
                {"name": "web", "port": 80, "targetPort": 8080},
                {"name": "dns", "port": 53, "protocol": "TCP"},  # TCP: not in front of the UDP port
                {"name": "a-name-too-long-for-a-container-port", "port": 7000},
            ]
        }
    }
    ports = spec_of(deployment, svc).model_dump(mode="json")["ports"]
    assert ports == [
        {"name": "web", "port": 8080, "protocol": "TCP", "service_port": 80},
        {"name": "port-9090", "port": 9090, "protocol": "TCP"},
        {"name": "port-53-udp", "port": 53, "protocol": "UDP"},
        {"name": "port-7000", "port": 7000, "protocol": "TCP"},
    ]


class TestImportAndDelete:
    async def test_adopts_existing_deployments_then_deploys_them(
        self, client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake, deployer: Any
    ) -> None:
        await cluster_at(session, fake.url)
        assert (
            await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "test"})
        ).status_code == 201
        legacy_namespace(fake)
        fake.create(legacy_deployment("legacy"))
        fake.create(legacy_deployment("9lives"))
        result = (await client.post("/api/v1/namespaces/team-a/imports", json={})).json()
        assert result["imported"] == ["legacy"]
        assert "not a valid app name" in result["skipped"][0]["reason"]
        release = (await client.get("/api/v1/namespaces/team-a/apps/legacy/releases/1")).json()
        assert (release["cause"], release["spec"]["image"]) == ("import", "registry.example.com/legacy:7")
        assert release["spec"]["env"] == [{"name": "A", "value": "1"}]
        assert release["spec"]["probes"]["readiness"]["check"] == {
            "type": "http",
            "path": "/ready",
            "port": 8080,
        }
        again = (await client.post("/api/v1/namespaces/team-a/imports", json={})).json()
        assert again["imported"] == []

        response = await client.post(
            "/api/v1/namespaces/team-a/apps/legacy/deployments",
            json={"image": "registry.example.com/legacy:8"},
        )
        assert response.status_code == 201
        await deployer.run()
        outcome = await state_of(client, "legacy", response.json()["id"])
        assert outcome["status"] == "succeeded", (outcome["reason"], outcome["message"])
        live = fake.get("Deployment", "legacy", "team-a")
        assert live is not None
        assert live["spec"]["selector"] == {"matchLabels": {"app": "legacy"}}
        assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/legacy:8"

    async def test_adopted_container_and_ports_are_updated_never_duplicated(
        self, client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake, deployer: Any
    ) -> None:
        """Server-side apply merges containers by name, container ports by containerPort+protocol and Service
        ports by port+protocol (contracts.md §5): the first deploy used to name the container after the app,
        which added a second container beside the adopted `web`, and put the Service on the container's port
        beside the adopted port 80. An unnamed container port takes the name of the Service port in front."""
        await cluster_at(session, fake.url)
        assert (
            await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "test"})
        ).status_code == 201
        legacy_namespace(fake)
        shop = legacy_deployment("shop")
        shop_container = shop["spec"]["template"]["spec"]["containers"][0]
        shop_container["name"] = "web"
        shop_container["ports"] = [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]
        fake.create(shop, manager="kubectl-client-side-apply")
        fake.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "shop", "namespace": "team-a"},
                "spec": {
                    "selector": {"app": "shop"},
                    "ports": [
                        {"name": "public", "port": 80, "targetPort": "http"},
                        {"name": "metrics", "port": 9090},
                    ],
                },
            },
            manager="kubectl-client-side-apply",
        )
        assert (await client.post("/api/v1/namespaces/team-a/imports", json={})).json()["imported"] == [
            "shop"
        ]
        spec = (await client.get("/api/v1/namespaces/team-a/apps/shop/releases/1")).json()["spec"]
        assert spec["container"] == "web"
        assert spec["ports"] == [
            {"name": "http", "port": 8080, "protocol": "TCP", "service_port": 80},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ]

        for tag in ("8", "9"):
            response = await client.post(
                "/api/v1/namespaces/team-a/apps/shop/deployments",
                json={"image": f"registry.example.com/legacy:{tag}"},
            )
            assert response.status_code == 201, response.text
            await deployer.run()
            outcome = await state_of(client, "shop", response.json()["id"])
            assert outcome["status"] == "succeeded", (outcome["reason"], outcome["message"])

        live = fake.get("Deployment", "shop", "team-a")
        assert live is not None
        containers = live["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [("web", "registry.example.com/legacy:9")]
        assert sorted((p["name"], p["containerPort"], p["protocol"]) for p in containers[0]["ports"]) == [
            ("http", 8080, "TCP"),
            ("metrics", 9090, "TCP"),
        ]
        assert [e["name"] for e in containers[0]["env"]] == ["A", "SECRET"]
        svc = fake.get("Service", "shop", "team-a")
        assert svc is not None
        assert sorted(
            (p["name"], p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]
        ) == [
            ("http", 80, "http", "TCP"),
            ("metrics", 9090, "metrics", "TCP"),
        ]

    @pytest.mark.usefixtures("web")
    async def test_deleting_an_app_removes_its_objects(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        assert fake.get("Service", "web", "team-a") is not None
        assert (await client.delete(BASE, params={"confirm": "web"})).status_code == 204
        assert fake.get("Deployment", "web", "team-a") is None
        assert fake.get("Service", "web", "team-a") is None
        assert (await client.get(BASE)).status_code == 404


async def state_of(client: httpx.AsyncClient, app: str, deployment_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (
        await client.get(f"/api/v1/namespaces/team-a/apps/{app}/deployments/{deployment_id}")
    ).json()
    return body


@pytest.mark.usefixtures("web")
class TestApproval:
    async def test_deploys_wait_for_another_maintainer(
        self,
        client: httpx.AsyncClient,
        anonymous_client: httpx.AsyncClient,
        deployer: Any,
        fake: KubeFake,
        session: AsyncSession,
        minter: Any,
    ) -> None:
        assert (
            await client.patch("/api/v1/namespaces/team-a", json={"require_deploy_approval": True})
        ).status_code == 200
        waiting = await deploy(client, GOOD)
        assert (waiting["status"], waiting["reason"]) == ("pending", "AwaitingApproval")
        await deployer.run()
        assert fake.get("Deployment", "web", "team-a") is None  # nothing ran
        assert (await state(client, waiting["id"]))["reason"] == "AwaitingApproval"

        own = await client.post(f"{BASE}/deployments/{waiting['id']}/approve")
        assert own.status_code == 403  # the requester cannot approve their own deploy
        maintainer = await make_user(session, "maintainer@example.com")
        await make_member(session, maintainer, "team-a", Role.maintainer)
        approved = await anonymous_client.post(
            f"{BASE}/deployments/{waiting['id']}/approve", headers=minter.identity(maintainer, "app-service")
        )
        assert approved.status_code == 200, approved.text
        await deployer.run()
        assert (await state(client, waiting["id"]))["status"] == "succeeded"

    async def test_rollbacks_never_wait(self, client: httpx.AsyncClient, deployer: Any) -> None:
        await deploy(client, GOOD)
        await deployer.run()
        await deploy(client, {"image": f"{IMAGE}:2"})
        await deployer.run()
        await client.patch("/api/v1/namespaces/team-a", json={"require_deploy_approval": True})
        rollback = await client.post(f"{BASE}/rollback", json={"to_release": 1})
        assert rollback.json()["reason"] is None
        await deployer.run()
        assert (await state(client, rollback.json()["id"]))["status"] == "succeeded"

    async def test_a_rollback_to_a_release_that_never_rolled_out_waits(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """A rollback skips approval only as the emergency path back to a release that ran before: rolling
        "back" to the release that waits for approval used to roll it out with no one approving it."""
        await client.patch("/api/v1/namespaces/team-a", json={"require_deploy_approval": True})
        first = await deploy(client, GOOD)  # release 1, never approved, never rolled out
        assert first["reason"] == "AwaitingApproval"
        rollback = await client.post(f"{BASE}/rollback", json={"to_release": 1})
        assert rollback.status_code == 201, rollback.text
        assert (rollback.json()["status"], rollback.json()["reason"]) == ("pending", "AwaitingApproval")
        await deployer.run()
        assert fake.get("Deployment", "web", "team-a") is None  # nothing ran

    async def test_a_rollback_to_a_waiting_release_waits(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """Release 2 waits for approval; a rollback to it must wait too, while one to the release that
        rolled out (1) is still the emergency path."""
        await deploy(client, GOOD)
        await deployer.run()
        await client.patch("/api/v1/namespaces/team-a", json={"require_deploy_approval": True})
        waiting = await deploy(client, {"image": f"{IMAGE}:2"})
        assert waiting["reason"] == "AwaitingApproval"
        sneaky = await client.post(f"{BASE}/rollback", json={"to_release": 2})
        assert sneaky.status_code == 201, sneaky.text
        assert sneaky.json()["reason"] == "AwaitingApproval"
        await deployer.run()
        assert container(fake)["image"] == f"{IMAGE}:1"
        back = await client.post(f"{BASE}/rollback", json={"to_release": 1})
        assert back.json()["reason"] is None


class TestAppDeletedMeanwhile:
    async def test_locking_an_app_deleted_meanwhile_is_a_404(
        self, client: httpx.AsyncClient, session: AsyncSession, web: None
    ) -> None:
        """A deploy read the app, then a concurrent DELETE won the app's lock: the deploy answers 404, as it
        would a moment later (an outside tester's race gave an AssertionError, a 500), and the worker's
        claim skips the run instead of failing."""
        app = await session.scalar(select(App).where(App.name == "web"))
        assert app is not None
        await session.delete(app)
        await session.flush()
        with pytest.raises(NotFound, match="deleted"):
            await releases_repository.lock_app(session, app.id)
        assert await releases_repository.locked_app(session, app.id) is None
