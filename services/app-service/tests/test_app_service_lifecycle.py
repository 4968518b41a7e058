"""The deployment lifecycle holds whatever happens, and `releases/lifecycle.py` is its only writer.

Random sequences of API calls, worker runs (the real runner against the Kubernetes contract fake) and
sweeper runs never record a status change that the table in `releases/states.py` does not allow, and a
deployment's row always says the status its last status event announced.
"""

import ast
import enum
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import kepler_app_service
from kepler_app_service.releases.lifecycle import move
from kepler_app_service.releases.states import (
    ACTIVE,
    AWAITING_APPROVAL,
    DEPLOYMENTS,
    WHILE_AWAITING_APPROVAL,
)
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import sweeps
from kepler_db import (
    Cluster,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    PlatformEvent,
    Role,
    User,
)
from kepler_kit.jobs import WorkerContext, sweep
from kepler_kit.lifecycle import IllegalTransition
from kepler_kit.metrics import REGISTRY
from kepler_kit.testing.identities import Minter, make_member, make_user
from kepler_kubefake import KubeFake, ServerError

IMAGE = "registry.example.com/team/web"
# The fake's clock runs 500x faster (see test_app_service_deployments): deadlines are not the point here.
PATIENT = {"progress_deadline_seconds": 86400}


class Step(enum.Enum):
    deploy = "deploy"
    deploy_crashing = "deploy a crash-looping image"
    cancel = "cancel"
    approve = "approve"
    rollback = "rollback"
    restart = "restart"
    require_approval = "toggle required approval"
    worker = "run the worker"
    worker_cluster_down = "run the worker while the cluster answers 503"
    sweep = "sweep"


# Rollouts and new deployments are what the other steps act on: they come up twice as often.
WEIGHTED = [*Step, Step.deploy, Step.deploy_crashing, Step.worker, Step.worker]
STEPS = st.lists(st.tuples(st.sampled_from(WEIGHTED), st.integers(0, 3)), min_size=4, max_size=10)
API_ANSWERS = {
    Step.deploy: {201},
    Step.deploy_crashing: {201},
    Step.cancel: {204, 404, 409},  # 404: none yet
    Step.approve: {200, 404, 409},
    Step.rollback: {201, 409},
    Step.restart: {201, 409},
}


@dataclass
class World:
    """One example's namespace and app, with the clients, worker and fake the whole test shares."""

    client: httpx.AsyncClient
    approver: httpx.AsyncClient
    deployer: Any
    fake: KubeFake
    sweeper: WorkerContext
    namespace: str
    deployments: list[str] = field(default_factory=list)
    approval: bool = False

    @property
    def app(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/apps/web"

    def pick(self, back: int) -> str:
        """The newest deployment half the time (the one still pending, if any), else an older one."""
        return self.deployments[-1 - back // 2 % len(self.deployments)] if self.deployments else "0" * 32

    async def take(self, step: Step, back: int) -> None:
        if step in API_ANSWERS:
            response = await self._call(step, back)
            assert response.status_code in API_ANSWERS[step], (step, response.text)
            if response.status_code == 201:
                self.deployments.append(response.json()["id"])
        elif step is Step.require_approval:
            self.approval = not self.approval
            body = {"require_deploy_approval": self.approval}
            assert (await self.client.patch(f"/api/v1/namespaces/{self.namespace}", json=body)).is_success
        elif step is Step.sweep:
            await sweep(self.sweeper)
        else:
            await self._work(down=step is Step.worker_cluster_down)

    async def _call(self, step: Step, back: int) -> httpx.Response:
        image = f"{IMAGE}-crashloop:{back}" if step is Step.deploy_crashing else f"{IMAGE}:{back}"
        if step in (Step.deploy, Step.deploy_crashing):
            return await self.client.post(f"{self.app}/deployments", json={"image": image, **PATIENT})
        if step is Step.cancel:
            return await self.client.post(f"{self.app}/deployments/{self.pick(back)}/cancel")
        if step is Step.approve:
            return await self.approver.post(f"{self.app}/deployments/{self.pick(back)}/approve")
        return await self.client.post(f"{self.app}/{step.value}", json={} if step is Step.rollback else None)

    async def _work(self, down: bool) -> None:
        """A job that fails (an illegal move raised in the runner, say) is a failure of the test."""
        if down:
            self.fake.inject(ServerError(status=503, times=1000, method="PATCH"))
        failed = _failed_runs()
        try:
            await self.deployer.run()
        finally:
            self.fake.clear_faults()
        assert _failed_runs() == failed, "a deployment run raised; see the log"


def _failed_runs() -> float:
    labels = {"service": "app-service", "job": "run_deployment", "outcome": "failed"}
    return REGISTRY.get_sample_value("kepler_jobs_total", labels) or 0.0


async def illegal_moves(session: AsyncSession) -> list[str]:
    """Every status change recorded so far, of every deployment, checked against the table."""
    rows = await session.execute(
        select(DeploymentEvent.deployment_id, DeploymentEvent.data)
        .where(DeploymentEvent.kind == "status")
        .order_by(DeploymentEvent.id)
    )
    history: dict[Any, list[tuple[DeploymentStatus, str | None]]] = {}
    for deployment_id, data in rows:
        history.setdefault(deployment_id, []).append((DeploymentStatus(data["status"]), data["reason"]))
    now = {row.id: row.status for row in await session.execute(select(Deployment.id, Deployment.status))}
    wrong = []
    for deployment_id, changes in history.items():
        wrong += [f"{deployment_id}: {m}" for m in _wrong_in(changes, now[deployment_id])]
    return wrong


def _wrong_in(changes: list[tuple[DeploymentStatus, str | None]], now: DeploymentStatus) -> Iterator[str]:
    if changes[0][0] is not DEPLOYMENTS.initial:
        yield f"born {changes[0][0]}"
    for (before, reason), (after, _) in itertools.pairwise(changes):
        if not DEPLOYMENTS.allows(before, after):
            yield f"{before} -> {after}"
        if reason == AWAITING_APPROVAL and after not in WHILE_AWAITING_APPROVAL:
            yield f"{before} ({reason}) -> {after}"
    if now is not changes[-1][0]:
        yield f"the row says {now}, its last status event {changes[-1][0]}"


async def log_disagreements(session: AsyncSession) -> list[str]:
    """The platform event log tells each deployment's story as its row does: requested once, and, once
    final, one event of its final state (an approved one, `deployment.approved` once)."""
    rows = await session.execute(
        select(PlatformEvent.kind, PlatformEvent.data["deployment_id"].astext)
        .where(PlatformEvent.kind.startswith("deployment."))
        .order_by(PlatformEvent.id)
    )
    told: dict[str, list[str]] = {}
    for kind, deployment_id in rows:
        told.setdefault(deployment_id, []).append(kind.removeprefix("deployment."))
    wrong = []
    for row in await session.execute(select(Deployment.id, Deployment.status, Deployment.message)):
        kinds = [k for k in told.get(str(row.id), []) if k != "approved"]
        final = [row.status.value] if row.status in DEPLOYMENTS.terminal else []
        if kinds != ["requested", *final]:
            wrong.append(f"{row.id} ({row.status.value}): the log says {kinds}")
        if (row.message or "").startswith("approved by") and "approved" not in told.get(str(row.id), []):
            wrong.append(f"{row.id}: approved, the log does not say so")
    return wrong


Worlds = Callable[[], Awaitable[World]]


class TestAnySequence:
    @pytest.fixture
    async def worlds(
        self,
        client: httpx.AsyncClient,
        anonymous_client: httpx.AsyncClient,
        admin: User,
        minter: Minter,
        deployer: Any,
        fake: KubeFake,
        settings: AppServiceSettings,
        session: AsyncSession,
        arq: ArqRedis,
        queue_name: str,
    ) -> Worlds:
        """A fresh namespace and app per example (examples share the test's database and cluster); the
        approver is a maintainer other than the requester; the sweeper's stale time is a millisecond, so
        every active deployment counts as lost."""
        session.add(Cluster(name="test", api_url=fake.url))
        maintainer = await make_user(session, "maintainer@example.com")
        quick = AppServiceSettings(**{**settings.model_dump(), "deploy_stale_seconds": 0.001})
        sweeper: WorkerContext = {"redis": arq, "queue_name": queue_name, "sweeps": sweeps(quick)}
        sweeper["sessionmaker"] = deployer.sessionmaker
        examples = itertools.count()

        async def world() -> World:
            client.headers.update(minter.identity(admin, "app-service"))  # a run outlives one identity
            anonymous_client.headers.update(minter.identity(maintainer, "app-service"))
            namespace = f"life-{next(examples)}"
            await _namespace_with_app(client, namespace)
            await make_member(session, maintainer, namespace, Role.maintainer)
            return World(client, anonymous_client, deployer, fake, sweeper, namespace)

        return world

    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a real rollout or several
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(steps=STEPS)
    async def test_no_illegal_transition(
        self, worlds: Worlds, session: AsyncSession, steps: list[tuple[Step, int]]
    ) -> None:
        world = await worlds()
        for step, back in [(Step.deploy, 0), *steps]:
            await world.take(step, back)
            assert await illegal_moves(session) == [], (step, steps)
            assert await log_disagreements(session) == [], (step, steps)


async def _namespace_with_app(client: httpx.AsyncClient, namespace: str) -> None:
    created = await client.post("/api/v1/namespaces", json={"name": namespace, "cluster": "test"})
    assert created.status_code == 201, created.text
    app = {"name": "web", "git_url": "https://g.example/web.git", "ports": [{"name": "http", "port": 8080}]}
    assert (await client.post(f"/api/v1/namespaces/{namespace}/apps", json=app)).status_code == 201


WRITERS = Path(kepler_app_service.__file__).parent
THE_WRITER = WRITERS / "releases" / "lifecycle.py"


def status_writes(source: str, deployments_only: bool) -> list[int]:
    """Lines that set a status: `x.status = …` (any `x` in the releases domain, a `deployment…` elsewhere),
    or `status=` given to the Deployment model (not the response schema of that name) or to an
    `update(Deployment).values(…)`."""
    tree = ast.parse(source)
    model = {"models.Deployment", "kepler_db.Deployment"}
    if _imports_model(tree):
        model.add("Deployment")
    lines = []
    for node in ast.walk(tree):
        for target in _targets(node):
            named = "deploy" in ast.unparse(target.value).lower()
            if target.attr == "status" and (named or not deployments_only):
                lines.append(target.lineno)
        if isinstance(node, ast.Call) and any(k.arg == "status" for k in node.keywords):
            callee = ast.unparse(node.func)
            if callee in model or (callee.endswith(".values") and "Deployment" in callee):
                lines.append(node.lineno)
    return lines


def _imports_model(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("kepler_db")
        and any(alias.name == "Deployment" for alias in node.names)
        for node in tree.body
    )


def _targets(node: ast.AST) -> Iterator[ast.Attribute]:
    targets = node.targets if isinstance(node, ast.Assign) else []
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    for target in targets:
        for each in target.elts if isinstance(target, ast.Tuple) else [target]:
            if isinstance(each, ast.Attribute):
                yield each


class TestOneWriter:
    def test_no_module_but_the_lifecycle_writes_a_deployment_status(self) -> None:
        found = {
            str(path.relative_to(WRITERS)): lines
            for path in WRITERS.rglob("*.py")
            if path != THE_WRITER
            and (lines := status_writes(path.read_text(), deployments_only="releases" not in path.parts))
        }
        assert found == {}, "write the status with releases.lifecycle.move (it checks the transition)"

    @pytest.mark.parametrize(
        "source",
        [
            "deployment.status = DeploymentStatus.failed",
            "older.status, older.reason = s, r",
            "row = models.Deployment(app_id=a, status=DeploymentStatus.pending)",
            "from kepler_db import Deployment\nDeployment(status=s)",
            "await session.execute(update(Deployment).where(x).values(status=s))",
        ],
    )
    def test_the_scan_sees_each_way_of_writing_it(self, source: str) -> None:
        assert status_writes(source, deployments_only=False) == [source.count("\n") + 1]

    def test_the_scan_leaves_other_statuses_alone(self) -> None:
        """A namespace's status outside releases, and the API's `Deployment` schema, which has one too."""
        assert status_writes("namespace.status = NamespaceStatus.active", deployments_only=True) == []
        schema = "from kepler_app_service.releases.schemas import Deployment\nDeployment(status=s)"
        assert status_writes(schema, deployments_only=False) == []


class TestTable:
    def test_active_is_what_the_api_always_called_active(self) -> None:
        """The sweeper, the claim and the event stream's end all read ACTIVE: it must not drift."""
        assert {DeploymentStatus.pending, DeploymentStatus.applying, DeploymentStatus.progressing} == ACTIVE
        assert set(DeploymentStatus) - ACTIVE == DEPLOYMENTS.terminal

    async def test_a_deployment_awaiting_approval_cannot_start(self, session: AsyncSession) -> None:
        """The hold on `pending`: neither the runner nor anything else may apply it before approval."""
        held = Deployment(status=DeploymentStatus.pending, reason=AWAITING_APPROVAL)
        with pytest.raises(IllegalTransition, match="awaiting approval cannot go from pending to applying"):
            await move(session, held, DeploymentStatus.applying)
        assert held.status is DeploymentStatus.pending

    async def test_a_final_deployment_stays_final(self, session: AsyncSession) -> None:
        done = Deployment(status=DeploymentStatus.succeeded, reason="RolledOut")
        with pytest.raises(IllegalTransition, match="it can go to nowhere: it is final"):
            await move(session, done, DeploymentStatus.superseded, "Superseded")
        assert (done.status, done.reason) == (DeploymentStatus.succeeded, "RolledOut")
