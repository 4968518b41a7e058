"""Delivery metrics (DORA's four keys) as a team reads them, computed from a scripted event log.

The history (`script`), with T the end of the window asked about (a 7-day window: [T − 7 d, T)):

app `web` of team-a
  W0  succeeded      T − 10 d      (before the window)
  W00 failed         T − 8 d       (before the window; W1 restores it)
  W1  succeeded      T − 6 d       committed T − 6 d − 2 h            lead  7 200 s (commit)
  W2  failed         T − 5 d                                          restored by W3: 1 800 s
  W3  succeeded      T − 5 d + 30 m  automatic rollback               (no deployment, no lead, no failure)
  W4  succeeded      T − 4 d       release created T − 5 d, no commit lead 86 400 s (release)
  W5  rolled_back    T − 3 d                                          restored by W6: 86 400 s
  W6  succeeded      T − 2 d       committed T − 2 d − 4 h            lead 14 400 s (commit)
  W7  failed         T − 1 h                                          open: W8 comes after T
  W8  succeeded      T + 1 h       (after the window)
app `api` of team-a
  A1  succeeded      T − 6 d + 1 h  release created T − 6 d            lead  3 600 s (release)
  A2  failed         T − 2 d, and again as rolled_back at T − 2 d + 1 m (one deployment: counted once)
                                                                     restored by A3: 7 200 s
  A3  succeeded      T − 2 d + 2 h  committed T − 2 d                   lead  7 200 s (commit)
app `shop` of team-b: one success at T − 1 d (another namespace: never in team-a's numbers)

By hand, percentiles interpolated as Postgres' percentile_cont (p at position p·(n − 1) of the sorted values):
  web:  deployments W1 W4 W6 = 3, 3/7 per day; lead 7 200, 14 400, 86 400 → median 14 400,
        p90 14 400 + 0.8 · 72 000 = 72 000, mean 36 000, 2 from commit and 1 from release;
        outcomes W1 W2 W4 W5 W6 W7 = 6, failed W2 W5 W7 = 3 → 0.5;
        restores 1 800, 86 400 → median = mean = 44 100, 2 restored, 1 open.
  api:  deployments 2; lead 3 600, 7 200 → median 5 400, p90 6 840, mean 5 400; failure rate 1/3;
        restore 7 200, none open.
  team-a: deployments 5, 5/7 per day; lead 3 600, 7 200, 7 200, 14 400, 86 400 → median 7 200,
        p90 14 400 + 0.6 · 72 000 = 57 600, mean 118 800 / 5 = 23 760, 3 from commit, 2 from release;
        failure rate 4/9; restores 1 800, 7 200, 86 400 → median 7 200, mean 31 800, 3 restored, 1 open.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.app import create_app
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.stats import export
from kepler_db import App, Namespace, PlatformEvent, Role, User
from kepler_kit.events.kinds import (
    DeploymentFailed,
    DeploymentOutcome,
    DeploymentRolledBack,
    DeploymentSucceeded,
)
from kepler_kit.metrics import REGISTRY
from kepler_kit.testing.identities import Minter, make_member, make_user
from kepler_kit.testing.services import service_client

T = datetime(2026, 11, 20, tzinfo=UTC)
D, H, M = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
WEB = "/api/v1/namespaces/team-a/apps/web/stats"
TEAM = "/api/v1/namespaces/team-a/stats"


class Log:
    """Writes outcome events as app-service publishes them, with the times a scenario chooses."""

    def __init__(self, session: AsyncSession, namespace: Namespace, app: App | None = None) -> None:
        self.session, self.namespace = session, namespace
        self.app_id, self.app = (app.id, app.name) if app else (uuid.uuid4(), "gone")

    def add(
        self,
        kind: type[DeploymentOutcome],
        at: datetime,
        *,
        created: datetime | None = None,
        committed: datetime | None = None,
        automatic: bool = False,
        rollback: bool = False,
        deployment: uuid.UUID | None = None,
    ) -> uuid.UUID:
        deployment = deployment or uuid.uuid4()
        event = kind(
            **{"namespace_id": self.namespace.id, "app_id": self.app_id, "deployment_id": deployment},
            **{"release": 1, "automatic": automatic, "rollback": rollback, "requested_at": at - M},
            **{"release_created_at": created or at - D, "committed_at": committed},
        )
        self.session.add(self.row(event, at))
        return deployment

    def row(self, event: DeploymentOutcome, at: datetime) -> PlatformEvent:
        return PlatformEvent(
            **{"kind": event.kind, "version": event.version, "service": "app-service", "actor": "kepler"},
            **{"namespace_id": self.namespace.id, "namespace": self.namespace.name},
            **{"app_id": self.app_id, "app": self.app, "data": event.data(), "occurred_at": at},
        )


async def app_named(session: AsyncSession, name: str) -> App:
    app = await session.scalar(select(App).where(App.name == name))
    assert app is not None
    return app


async def namespace_named(session: AsyncSession, name: str) -> Namespace:
    namespace = await session.scalar(select(Namespace).where(Namespace.name == name))
    assert namespace is not None
    return namespace


async def script(session: AsyncSession, t: datetime) -> None:
    """The history of the module's docstring, ending at `t`."""
    team_a = await namespace_named(session, "team-a")
    web = Log(session, team_a, await app_named(session, "web"))
    web.add(DeploymentSucceeded, t - 10 * D)
    web.add(DeploymentFailed, t - 8 * D)
    web.add(DeploymentSucceeded, t - 6 * D, committed=t - 6 * D - 2 * H)
    web.add(DeploymentFailed, t - 5 * D)
    web.add(DeploymentSucceeded, t - 5 * D + 30 * M, automatic=True, created=t - 30 * D)
    web.add(DeploymentSucceeded, t - 4 * D, created=t - 5 * D)
    web.add(DeploymentRolledBack, t - 3 * D)
    web.add(DeploymentSucceeded, t - 2 * D, committed=t - 2 * D - 4 * H)
    web.add(DeploymentFailed, t - H)
    web.add(DeploymentSucceeded, t + H)
    api = Log(session, team_a, await app_named(session, "api"))
    api.add(DeploymentSucceeded, t - 6 * D + H, created=t - 6 * D)
    twice = api.add(DeploymentFailed, t - 2 * D)
    api.add(DeploymentRolledBack, t - 2 * D + M, deployment=twice)
    api.add(DeploymentSucceeded, t - 2 * D + 2 * H, committed=t - 2 * D)
    shop = Log(session, await namespace_named(session, "team-b"), await app_named(session, "shop"))
    shop.add(DeploymentSucceeded, t - D)
    await session.flush()


@pytest.fixture
async def teams(client: httpx.AsyncClient) -> None:
    """team-a with apps `web` and `api`, team-b with app `shop`."""
    for namespace, apps in (("team-a", ("web", "api")), ("team-b", ("shop",))):
        assert (await client.post("/api/v1/namespaces", json={"name": namespace})).status_code == 201
        for app in apps:
            body = {"name": app, "git_url": f"https://g.example/{app}.git"}
            created = await client.post(f"/api/v1/namespaces/{namespace}/apps", json=body)
            assert created.status_code == 201, created.text


@pytest.fixture
async def history(teams: None, session: AsyncSession) -> None:
    await script(session, T)


WEEK = {"window": "7d", "until": T.isoformat()}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert (response.status_code, response.headers["content-type"]) == (status, "application/problem+json")


@pytest.mark.usefixtures("history")
class TestAppStats:
    async def test_the_four_keys_match_the_hand_computed_values(self, client: httpx.AsyncClient) -> None:
        response = await client.get(WEB, params=WEEK)

        assert response.status_code == 200, response.text
        stats = response.json()
        assert stats["window"] == {
            "since": "2026-11-13T00:00:00Z",
            "until": "2026-11-20T00:00:00Z",
            "days": 7.0,
        }
        assert stats["deployment_frequency"] == {"count": 3, "per_day": pytest.approx(3 / 7), "band": "high"}
        assert stats["lead_time"] == {
            **{"median_seconds": 14400, "p90_seconds": pytest.approx(72000), "mean_seconds": 36000},
            **{"from_commit": 2, "from_release": 1, "band": "elite"},
        }
        assert stats["change_failure_rate"] == {"ratio": 0.5, "failed": 3, "deployments": 6, "band": "low"}
        assert stats["time_to_restore"] == {
            **{"median_seconds": 44100, "mean_seconds": 44100, "restored": 2, "open": 1, "band": "high"}
        }

    async def test_one_deployment_reported_twice_counts_once(self, client: httpx.AsyncClient) -> None:
        """api's A2 failed and was then reported rolled back: one failed deployment, one restore."""
        stats = (await client.get("/api/v1/namespaces/team-a/apps/api/stats", params=WEEK)).json()

        assert stats["change_failure_rate"] == {
            **{"ratio": pytest.approx(1 / 3), "failed": 1, "deployments": 3, "band": "low"}
        }
        assert stats["lead_time"]["median_seconds"] == 5400
        assert stats["lead_time"]["p90_seconds"] == pytest.approx(6840)
        assert stats["time_to_restore"]["restored"] == 1
        assert stats["time_to_restore"]["median_seconds"] == 7200

    async def test_a_rollback_by_a_person_is_a_deployment_without_a_lead_time(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """Redeploying an older release changes nothing new: it counts as a deployment, and its release's
        age (30 d here) is not a lead time."""
        web = Log(session, await namespace_named(session, "team-a"), await app_named(session, "web"))
        web.add(DeploymentSucceeded, T - 30 * M, created=T - 30 * D, rollback=True)
        await session.flush()
        stats = (await client.get(WEB, params=WEEK)).json()
        assert stats["deployment_frequency"]["count"] == 4
        assert stats["lead_time"]["from_release"] + stats["lead_time"]["from_commit"] == 3

    async def test_a_window_leaves_out_what_happened_before_it(self, client: httpx.AsyncClient) -> None:
        """Going back to T − 10 d brings W0 in (a fourth deployment, lead 1 d as the script's default
        release age) and W00 (a fourth failure, restored by W1 two days later)."""
        longer = {"since": (T - 10 * D).isoformat(), "until": T.isoformat()}
        stats = (await client.get(WEB, params=longer)).json()

        assert stats["deployment_frequency"]["count"] == 4
        assert stats["deployment_frequency"]["per_day"] == pytest.approx(0.4)
        assert stats["change_failure_rate"] == {"ratio": 0.5, "failed": 4, "deployments": 8, "band": "low"}
        assert stats["time_to_restore"]["restored"] == 3
        assert stats["time_to_restore"]["median_seconds"] == 86400

    async def test_a_failure_is_restored_only_by_a_success_inside_the_window(
        self, client: httpx.AsyncClient
    ) -> None:
        """W7 is open at T; a window ending after W8 sees it restored two hours after it failed."""
        later = {"since": (T - 7 * D).isoformat(), "until": (T + 2 * H).isoformat()}
        restore = (await client.get(WEB, params=later)).json()["time_to_restore"]

        assert (restore["restored"], restore["open"]) == (3, 0)
        assert restore["mean_seconds"] == pytest.approx((1800 + 86400 + 7200) / 3)

    async def test_no_events_is_no_deployment_and_no_rates(self, client: httpx.AsyncClient) -> None:
        quiet = {"window": "7d", "until": (T - 20 * D).isoformat()}
        stats = (await client.get(WEB, params=quiet)).json()

        assert stats["deployment_frequency"] == {"count": 0, "per_day": 0.0, "band": "low"}
        assert stats["lead_time"]["median_seconds"] is None
        assert stats["change_failure_rate"]["ratio"] is None
        assert stats["time_to_restore"] == {
            **{"median_seconds": None, "mean_seconds": None, "restored": 0, "open": 0, "band": None}
        }

    async def test_the_default_window_is_the_last_30_days(self, client: httpx.AsyncClient) -> None:
        response = await client.get(WEB)

        window = response.json()["window"]
        assert window["days"] == 30.0
        assert datetime.fromisoformat(window["until"]) > T


@pytest.mark.usefixtures("history")
class TestNamespaceStats:
    async def test_the_namespace_pools_its_apps_and_breaks_them_down(self, client: httpx.AsyncClient) -> None:
        stats = (await client.get(TEAM, params=WEEK)).json()

        assert stats["deployment_frequency"]["count"] == 5
        assert stats["lead_time"] == {
            **{"median_seconds": 7200, "p90_seconds": pytest.approx(57600), "mean_seconds": 23760},
            **{"from_commit": 3, "from_release": 2, "band": "elite"},
        }
        assert stats["change_failure_rate"]["ratio"] == pytest.approx(4 / 9)
        assert stats["time_to_restore"] == {
            **{"median_seconds": 7200, "mean_seconds": 31800, "restored": 3, "open": 1, "band": "high"}
        }
        apps = {app["app"]: app for app in stats["apps"]}
        assert list(apps) == ["api", "web"]
        assert [apps[name]["deployment_frequency"]["count"] for name in apps] == [2, 3]
        assert apps["web"]["time_to_restore"]["open"] == 1
        assert not apps["web"]["deleted"]

    async def test_a_deleted_apps_history_still_counts(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        gone = Log(session, await namespace_named(session, "team-a"))
        gone.add(DeploymentSucceeded, T - D)
        await session.flush()

        stats = (await client.get(TEAM, params=WEEK)).json()

        assert stats["deployment_frequency"]["count"] == 6
        assert [(app["app"], app["deleted"]) for app in stats["apps"]] == [
            ("api", False),
            ("gone", True),
            ("web", False),
        ]


@pytest.fixture
async def callers(teams: None, session: AsyncSession, minter: Minter) -> dict[str, dict[str, str]]:
    """A viewer of team-a, and the owner of team-b only."""
    viewer = await make_user(session, "viewer@example.com")
    await make_member(session, viewer, "team-a", Role.viewer)
    outsider: User = await make_user(session, "outsider@example.com")
    await make_member(session, outsider, "team-b", Role.owner)
    return {
        name: minter.identity(user, "app-service")
        for name, user in (("viewer", viewer), ("outsider", outsider))
    }


class TestAccess:
    async def test_a_viewer_reads_both(
        self, anonymous_client: httpx.AsyncClient, callers: dict[str, dict[str, str]]
    ) -> None:
        for path in (WEB, TEAM):
            response = await anonymous_client.get(path, headers=callers["viewer"])
            assert response.status_code == 200, path

    async def test_another_namespace_is_404(
        self, anonymous_client: httpx.AsyncClient, callers: dict[str, dict[str, str]]
    ) -> None:
        for path in (WEB, TEAM):
            assert_problem(await anonymous_client.get(path, headers=callers["outsider"]), 404)

    @pytest.mark.usefixtures("teams")
    async def test_an_unknown_app_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/namespaces/team-a/apps/nope/stats")

        assert_problem(response, 404)
        assert "does not exist" in response.json()["detail"]


@pytest.mark.usefixtures("teams")
class TestWindowInput:
    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"window": "abc"}, "window"),
            ({"window": "7d\u0000"}, "window"),
            ({"window": "\u0000"}, "window"),
            ({"window": "0d"}, "window"),
            ({"window": "99999999999999999999d"}, "window"),
            ({"window": "367d"}, "window"),
            ({"window": "-7d"}, "window"),
            ({"window": "7d\n"}, "window"),
            ({"window": ""}, "window"),
            ({"since": "yesterday"}, "since"),
            ({"since": "2026-11-01T00:00:00"}, "since"),  # no time zone: whose midnight?
            ({"until": "99999-01-01T00:00:00Z"}, "until"),
            ({"until": "0001-01-01T00:00:00Z"}, "until"),  # 30 days before it is no date
            ({"since": "2026-11-01T00:00:00Z", "window": "7d"}, "since"),
            ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since"),
            ({"since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ],
    )
    async def test_garbage_is_422_naming_the_parameter(
        self, client: httpx.AsyncClient, params: dict[str, str], field: str
    ) -> None:
        for path in (WEB, TEAM):
            response = await client.get(path, params=params)
            assert_problem(response, 422)
            assert response.json()["errors"][0]["loc"] == ["query", field], params

    @pytest.mark.parametrize("window", ["12h", "2w", "90d", "366d"])
    async def test_hours_days_and_weeks_are_windows(self, client: httpx.AsyncClient, window: str) -> None:
        response = await client.get(WEB, params={"window": window})

        assert response.status_code == 200, response.text


def gauges(exposition: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The DORA gauges of a /metrics page: name → {sorted labels: value}."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name.startswith("kepler_dora_"):
            samples = found.setdefault(family.name, {})
            for sample in family.samples:
                samples[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
async def exporter_off(
    settings_overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> Any:
    """The service without its background refresh: this test refreshes over its own transaction."""
    app = create_app(AppServiceSettings(**settings_overrides, dora_refresh_seconds=0))
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        yield client


class TestPrometheus:
    async def test_gauges_appear_after_a_refresh(
        self,
        teams: None,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        exporter_off: httpx.AsyncClient,
    ) -> None:
        """Over the last 30 days (the script ending now): web's W0…W7, not W8 (still to come); shop in
        team-b has its own series; an app without outcomes has none."""
        await script(session, datetime.now(UTC))
        await export.refresh(sessionmaker)

        found = gauges((await exporter_off.get("/metrics")).text)

        web, shop = (("app", "web"), ("namespace", "team-a")), (("app", "shop"), ("namespace", "team-b"))
        assert found["kepler_dora_deployments"][web] == 4
        assert found["kepler_dora_deployments"][shop] == 1
        assert found["kepler_dora_change_failure_ratio"][web] == 0.5
        assert found["kepler_dora_open_failures"][web] == 1
        assert found["kepler_dora_time_to_restore_seconds"][web] == 86400
        assert found["kepler_dora_lead_time_seconds"][(*web, ("quantile", "0.9"))] > 0
        api = (("app", "api"), ("namespace", "team-a"))
        assert set(found["kepler_dora_deployments"]) == {web, api, shop}

    async def test_a_refresh_drops_apps_without_outcomes_any_more(
        self, teams: None, session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Series are replaced whole: the cardinality follows what happened in the window, and an app
        whose outcomes left it (here: were pruned) leaves /metrics."""
        await script(session, datetime.now(UTC))
        await export.refresh(sessionmaker)
        await session.execute(delete(PlatformEvent))
        await export.refresh(sessionmaker)

        found = gauges(generate_latest(REGISTRY).decode())

        assert found["kepler_dora_deployments"] == {}

    async def test_the_service_refreshes_them_in_the_background(
        self,
        settings_overrides: dict[str, Any],
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
    ) -> None:
        """Started with the service (over its own connections, so this test's transaction is not what it
        reads): the refresh time, later than the service's start, is what shows the task ran."""
        started = datetime.now(UTC).timestamp()
        app = create_app(AppServiceSettings(**settings_overrides))
        async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
            for _ in range(500):
                found = gauges((await client.get("/metrics")).text)
                refreshed = found["kepler_dora_refreshed_timestamp_seconds"].get((), 0.0)
                if refreshed >= started:
                    break
                await asyncio.sleep(0.01)

        assert refreshed >= started


@pytest.mark.usefixtures("web")
class TestFromTheDeploymentLifecycle:
    async def test_a_deploy_then_an_automatic_rollback(
        self, client: httpx.AsyncClient, deployer: Any
    ) -> None:
        """What app-service itself publishes is what the keys read: release 1 deploys, release 2
        crash-loops and is rolled back automatically (that success restores, but is no deployment)."""
        image = "registry.example.com/team/web"
        for body in (
            {"image": f"{image}:1", "progress_deadline_seconds": 86400},
            {"image": f"{image}-crashloop:2"},
        ):
            assert (
                await client.post("/api/v1/namespaces/team-a/apps/web/deployments", json=body)
            ).status_code == 201
            await deployer.run()

        stats = (await client.get(WEB)).json()

        assert stats["deployment_frequency"]["count"] == 1
        assert (stats["lead_time"]["from_release"], stats["lead_time"]["from_commit"]) == (1, 0)
        assert stats["change_failure_rate"] == {"ratio": 0.5, "failed": 1, "deployments": 2, "band": "low"}
        assert (stats["time_to_restore"]["restored"], stats["time_to_restore"]["open"]) == (1, 0)
