"""Deploying onto a cluster that behaves like a real one (contracts.md §5, "Real-cluster behaviours"):
expired watches, objects the API server refuses, pods that look healthy until they crash."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from kepler_app_service.context import CLIENTS_KEY
from kepler_kubefake import Forbid, KubeFake, Reject, WatchGone

BASE = "/api/v1/namespaces/team-a/apps/web"
# Kubernetes time runs 500x faster here: a day's progress deadline (173 s), so a loaded machine never misses
# the default 600 s (1.2 s) in tests that are not about deadlines.
GOOD: dict[str, Any] = {
    "image": "registry.example.com/team/web:1",
    "replicas": 2,
    "progress_deadline_seconds": 86400,
}
MIRROR = 'Invalid value: "registry.example.com/team/web:1": images must come from the mirror'


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


def stalled(fake: KubeFake) -> bool:
    """The new ReplicaSet has pods, which never become ready: the Deployment stops changing."""
    deployment = fake.get("Deployment", "web", "team-a") or {}
    status, generation = deployment.get("status") or {}, deployment.get("metadata", {}).get("generation")
    return (
        image(fake) == "registry.example.com/team/web:2"
        and status.get("observedGeneration") == generation
        and status.get("updatedReplicas", 0) >= 1
    )


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
        await fake.wait_for(lambda: stalled(fake), within=30)
        await asyncio.sleep(0.2)  # the Deployment is quiet now: its resourceVersion stays as it is
        before = len(fake.requests)
        fake.compact()
        fake.inject(WatchGone(times=1, path="/deployments"))  # the watch open now expires too
        await asyncio.sleep(1.5)  # 1.5 watch windows (watch_timeout_seconds=1)
        sent = [r for r in fake.requests[before:] if "/deployments" in r.path]
        assert len(sent) <= 12, [(r.method, r.path, r.query) for r in sent]
        fake.set_pod_behaviour("team-a", "web", None)  # its pods become ready: the runner still follows
        await run
        assert (await state(client, waiting))["status"] == "succeeded"


async def stream_kinds(client: httpx.AsyncClient, deployment_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{BASE}/deployments/{deployment_id}/events")
    frames = [f.split("\n") for f in response.text.split("\n\n") if f.startswith("id:")]
    return [
        {"event": f[1].removeprefix("event: "), **json.loads(f[2].removeprefix("data: "))} for f in frames
    ]


@pytest.mark.usefixtures("web")
class TestRefusedByTheCluster:
    async def test_an_rbac_denial_fails_the_deployment_with_the_clusters_reason(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """Kepler's service account may not patch Deployments here (RBAC: `... is forbidden: User ... cannot
        patch resource "deployments"`): the deployment fails at once, saying so, instead of reading the
        Status as the applied object (and dying on KeyError, re-run by the sweeper every minute)."""
        fake.inject(Forbid(verb="patch", resource="deployments", namespace="team-a"))
        refused = await deploy(client, GOOD)
        await deployer.run()
        done = await state(client, refused)
        assert (done["status"], done["reason"]) == ("failed", "Forbidden")
        assert 'cannot patch resource "deployments"' in done["message"]
        rejected = [e for e in await stream_kinds(client, refused) if e["event"] == "rejected"]
        assert [(e["kind"], e["name"], e["reason"]) for e in rejected] == [("Deployment", "web", "Forbidden")]

    async def test_a_terminating_namespace_fails_the_deployment(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """A namespace being deleted refuses creates with 403 and cause NamespaceTerminating
        (plugin/pkg/admission/namespace/lifecycle): the deployment fails naming it, without an automatic
        rollback that would be refused too, and a new deploy after the namespace is gone creates it again."""
        first = await deploy(client, GOOD)
        await deployer.run()
        assert (await state(client, first))["status"] == "succeeded"
        fake.terminate_namespace("team-a", hold=True)
        await fake.wait_for(lambda: fake.get("Deployment", "web", "team-a") is None, within=30)
        refused = await deploy(client, {"image": "registry.example.com/team/web:2"})
        await deployer.run()
        done = await state(client, refused)
        assert (done["status"], done["reason"]) == ("failed", "NamespaceTerminating")  # no rollback into it
        assert len(await deployments(client)) == 2
        fake.release_namespace("team-a")
        await fake.wait_for(lambda: fake.get("Namespace", "team-a") is None, within=30)
        again = await deploy(client, {"image": "registry.example.com/team/web:3"})
        await deployer.run()
        assert (await state(client, again))["status"] == "succeeded"
        assert image(fake) == "registry.example.com/team/web:3"

    async def test_an_object_the_apiserver_finds_invalid_fails_with_its_causes(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """A policy Kepler cannot know of (an admission webhook, a newer validation rule) answers 422
        Invalid with field causes (apimachinery `NewInvalid`): each reaches the user in the `rejected`
        event, and the deployment's message names the object."""
        fake.inject(
            Reject(
                path="/deployments/web",
                status=422,
                reason="Invalid",
                message='Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: '
                'Invalid value: "registry.example.com/team/web:1": images must come from the mirror',
                causes=[
                    {
                        "reason": "FieldValueInvalid",
                        "message": MIRROR,
                        "field": "spec.template.spec.containers[0].image",
                    }
                ],
            )
        )
        refused = await deploy(client, GOOD)
        await deployer.run()
        done = await state(client, refused)
        assert (done["status"], done["reason"]) == ("failed", "Invalid")
        assert done["message"].startswith("the cluster rejected Deployment 'web': ")
        rejected = next(e for e in await stream_kinds(client, refused) if e["event"] == "rejected")
        assert rejected["causes"] == [
            {
                "field": "spec.template.spec.containers[0].image",
                "reason": "FieldValueInvalid",
                "message": MIRROR,
            }
        ]


async def deployments(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get(f"{BASE}/deployments")).json()["items"]
    return items


@pytest.mark.usefixtures("web")
class TestPodsThatOnlyLookHealthy:
    async def test_an_image_that_exits_after_a_few_seconds_is_rolled_back(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """A container without a readinessProbe is Ready while it runs (pkg/kubelet/prober/prober_manager.go):
        an image that exits after a while completes its rollout, and `kubectl rollout status` says success.
        Kepler waits out the stabilisation window and sees the restart: the release is rolled back."""
        await deploy(client, GOOD)
        await deployer.run()
        # 300 s of the fake's time is 0.6 s: after the rollout completed (its pods start in 0.05 s), within
        # a window of 2 s.
        worker = deployer.clients[CLIENTS_KEY]
        worker.settings = worker.settings.model_copy(update={"rollout_stable_seconds": 2.0})
        crashing = await deploy(client, {"image": "registry.example.com/team/web-crashafter300:2"})
        await deployer.run()
        failed = await state(client, crashing)
        assert failed["status"] == "rolled_back", failed
        assert failed["reason"] in ("Unstable", "CrashLoop")
        rollback = (await deployments(client))[0]
        assert (rollback["release"], rollback["automatic"], rollback["status"]) == (1, True, "succeeded"), (
            rollback
        )
        assert image(fake) == "registry.example.com/team/web:1"

    async def test_a_release_that_stays_up_succeeds_after_the_window(
        self, client: httpx.AsyncClient, deployer: Any
    ) -> None:
        """The `stabilising` event tells a follower why the deployment is not done yet."""
        created = await deploy(client, GOOD)
        await deployer.run()
        assert (await state(client, created))["status"] == "succeeded"
        kinds = [e["event"] for e in await stream_kinds(client, created)]
        assert kinds.index("stabilising") < len(kinds) - 1
        assert kinds[-1] == "status"


@pytest.mark.usefixtures("web")
class TestReplicaFailure:
    async def test_a_rollback_is_not_failed_by_the_failed_releases_condition(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """Pods refused at creation (a quota) set ReplicaFailure=True/FailedCreate on the new ReplicaSet, and
        the Deployment copies it from any of its ReplicaSets (pkg/controller/deployment/progress.go): after
        the automatic rollback the condition still names the failed release's ReplicaSet, which must not
        fail the rollback."""
        await deploy(client, GOOD)
        await deployer.run()
        fake.fail_replica_creation(
            "team-a", "web", message="exceeded quota: team-a, requested: pods=1, used: pods=2"
        )
        refused = await deploy(client, {"image": "registry.example.com/team/web:2"})
        await deployer.run()
        failed = await state(client, refused)
        assert (failed["status"], failed["reason"]) == ("rolled_back", "FailedCreate")
        assert "exceeded quota" in failed["message"]
        rollback = (await deployments(client))[0]
        assert (rollback["release"], rollback["automatic"], rollback["status"]) == (1, True, "succeeded"), (
            rollback
        )

    async def test_a_failed_automatic_rollback_is_not_rolled_back_in_turn(
        self, client: httpx.AsyncClient, deployer: Any, fake: KubeFake
    ) -> None:
        """Rolling back a failed rollback would walk back through the app's history (and, when each release
        fails for a reason of the cluster's, alternate between two of them for ever)."""
        for n in (1, 2):
            await deploy(client, {"image": f"registry.example.com/team/web:{n}"})
            await deployer.run()
        fake.inject(Forbid(verb="patch", resource="deployments", namespace="team-a"))
        refused = await deploy(client, {"image": "registry.example.com/team/web:3"})
        await deployer.run()
        assert (await state(client, refused))["status"] == "rolled_back"
        history = await deployments(client)
        assert [(d["release"], d["automatic"], d["status"]) for d in history] == [
            (2, True, "failed"),
            (3, False, "rolled_back"),
            (2, False, "succeeded"),
            (1, False, "succeeded"),
        ]
