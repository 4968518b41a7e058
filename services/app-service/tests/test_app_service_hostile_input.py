"""What a careless client or an attacker sends app-service: 4xx problems, never a 500; and how fast lost
deployments come back."""

import itertools
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from sqlalchemy.ext.asyncio import AsyncSession

from kepler_app_service.app import ROUTERS, create_app
from kepler_app_service.releases.runner import HEARTBEAT_SECONDS
from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import sweeps
from kepler_db import Cluster
from kepler_kit.jobs import WorkerContext, sweep
from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.hostile import CRAFTED_CURSORS as CRAFTED
from kepler_kit.testing.hostile import NOT_BOOLEANS, NOT_INTEGERS, cursor, lax_scalars
from kepler_kubefake import KubeFake

PROBLEM = "application/problem+json"
APP = "/api/v1/namespaces/team-a/apps/web"
GOOD = {"image": "registry.example.com/team/web:1", "replicas": 1}

LISTS = ("/api/v1/namespaces", "/api/v1/namespaces/team-a/members", "/api/v1/namespaces/team-a/apps")
TYPED_LISTS = (f"{APP}/releases", f"{APP}/deployments")  # keys: a release number; a time and an id


@pytest.fixture
async def web(client: httpx.AsyncClient, session: AsyncSession, fake: KubeFake) -> None:
    session.add(Cluster(name="test", api_url=fake.url))
    await session.flush()
    created = await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "test"})
    assert created.status_code == 201, created.text
    app = {"name": "web", "git_url": "https://g.example/web.git"}
    assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201


def assert_problem(response: httpx.Response, status: int) -> None:
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text


@pytest.mark.usefixtures("web")
class TestControlCharacters:
    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/api/v1/namespaces", {"name": "team-b", "description": "a\u0000b"}),
            ("/api/v1/namespaces", {"name": "team-b", "display_name": "Team\u0000B"}),
            (
                "/api/v1/namespaces/team-a/apps",
                {"name": "api", "git_url": "https://g/x.git", "description": "\x00"},
            ),
            ("/api/v1/namespaces/team-a/apps", {"name": "api", "git_url": "https://g/x\u0000.git"}),
            ("/api/v1/namespaces/team-a/members", {"email": "a\u0000@example.com", "role": "viewer"}),
            (f"{APP}/deployments", {**GOOD, "env": [{"name": "MODE", "value": "on\u0000"}]}),
            (f"{APP}/deployments", {**GOOD, "args": ["--flag\u0000"]}),
        ],
    )
    async def test_body_fields_refuse_them_with_422(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> None:
        """Postgres cannot store NUL and asyncpg cannot encode a lone surrogate: both used to be 500s."""
        response = await client.post(path, json=body)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"][0] == "body"

    async def test_a_lone_surrogate_is_422(self, client: httpx.AsyncClient) -> None:
        """Valid JSON (`\\ud800`) that is no valid text: asyncpg could not encode it for Postgres."""
        body = '{"name": "team-b", "description": "lone \\ud800 surrogate"}'
        response = await client.post(
            "/api/v1/namespaces", content=body, headers={"content-type": "application/json"}
        )
        assert_problem(response, 422)

    async def test_patch_refuses_them_with_422(self, client: httpx.AsyncClient) -> None:
        response = await client.patch("/api/v1/namespaces/team-a", json={"description": "x\u0000"})
        assert_problem(response, 422)

    async def test_line_breaks_in_free_text_are_fine(self, client: httpx.AsyncClient) -> None:
        response = await client.patch("/api/v1/namespaces/team-a", json={"description": "one\r\ntwo\tthree"})
        assert response.status_code == 200, response.text

    async def test_query_and_path_parameters_refuse_them_with_422(self, client: httpx.AsyncClient) -> None:
        confirm = await client.delete(APP, params={"confirm": "we\u0000b"})
        assert_problem(confirm, 422)
        assert confirm.json()["errors"][0]["loc"] == ["query", "confirm"]
        pod = await client.delete(f"{APP}/pods/web%00x")
        assert_problem(pod, 422)
        assert pod.json()["errors"][0]["loc"] == ["path", "pod"]


@pytest.mark.usefixtures("web")
class TestCraftedCursors:
    @pytest.mark.parametrize("path", LISTS + TYPED_LISTS)
    async def test_each_list_answers_400(self, client: httpx.AsyncClient, path: str) -> None:
        """A cursor is opaque: one the API did not issue is the client's mistake, never a 500."""
        for crafted in CRAFTED:
            assert_problem(await client.get(path, params={"cursor": crafted}), 400)

    @pytest.mark.parametrize("path", TYPED_LISTS)
    async def test_a_string_where_the_key_is_typed_is_400(self, client: httpx.AsyncClient, path: str) -> None:
        """["x"] used to reach `int(after[0])` in the releases repository."""
        assert_problem(await client.get(path, params={"cursor": cursor(["x"])}), 400)

    async def test_a_release_number_out_of_range_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{APP}/releases", params={"cursor": cursor([2**40])})
        assert_problem(response, 400)

    @pytest.mark.parametrize("path", TYPED_LISTS)
    async def test_issued_cursors_still_page(self, client: httpx.AsyncClient, path: str) -> None:
        for image in ("registry.example.com/team/web:1", "registry.example.com/team/web:2"):
            assert (await client.post(f"{APP}/deployments", json={"image": image})).status_code == 201
        first = (await client.get(path, params={"limit": 1})).json()
        second = await client.get(path, params={"limit": 1, "cursor": first["next_cursor"]})
        assert second.status_code == 200
        assert second.json()["items"] != first["items"]
        assert second.json()["next_cursor"] is None


class TestRecovery:
    def test_defaults_resume_a_lost_deployment_within_20_seconds(self) -> None:
        """A lost deployment is rescued by the first sweep after its heartbeat goes stale; a live one
        heartbeats at least once per watch window, so it is never taken for a dead one."""
        stale = AppServiceSettings.model_fields["deploy_stale_seconds"].default
        sweep_every = KeplerSettings.model_fields["sweep_interval_seconds"].default
        watch_window = AppServiceSettings.model_fields["watch_timeout_seconds"].default
        assert stale + sweep_every < 20
        assert max(watch_window, HEARTBEAT_SECONDS) * 2 <= stale

    @pytest.mark.usefixtures("web")
    async def test_rescued_deployment_job_carries_the_creating_request_id(
        self,
        client: httpx.AsyncClient,
        arq: ArqRedis,
        queue_name: str,
        worker: Any,
        settings_overrides: dict[str, Any],
    ) -> None:
        """The sweeper's re-created job logs the id of the request that asked for the deploy."""
        response = await client.post(
            f"{APP}/deployments", json=GOOD, headers={"x-request-id": "req-deploy-1"}
        )
        assert response.status_code == 201, response.text
        lost = f"run_deployment:{response.json()['id']}:0"
        await arq.zrem(queue_name, lost)  # Redis lost it
        await arq.delete(f"arq:job:{lost}")
        quick = AppServiceSettings(**settings_overrides, deploy_stale_seconds=0.001)
        ctx: WorkerContext = {"redis": arq, "queue_name": queue_name, "sessionmaker": worker.sessionmaker}
        ctx["sweeps"] = sweeps(quick)
        assert await sweep(ctx) == 1
        info = await Job(lost, arq).info()
        assert info is not None
        assert info.kwargs == {"request_id": "req-deploy-1"}


@pytest.mark.usefixtures("web")
class TestNumbers:
    @pytest.mark.parametrize("replicas", [True, "2", " 2 ", 1.0])
    async def test_replica_counts_are_integers(self, client: httpx.AsyncClient, replicas: Any) -> None:
        """`true` used to scale to 1, and "2", " 2 " and 1.0 passed as counts: only a JSON integer is one."""
        assert (await client.post(f"{APP}/deployments", json=GOOD)).status_code == 201
        for path, body in (
            (f"{APP}/scale", {"replicas": replicas}),
            (f"{APP}/deployments", {**GOOD, "replicas": replicas}),
        ):
            response = await client.post(path, json=body)
            assert_problem(response, 422)
            assert response.json()["errors"][0]["loc"] == ["body", "replicas"]

    @pytest.mark.parametrize(
        ("method", "path", "params", "body", "loc"),
        [
            ("GET", f"{APP}/releases/2147483648", None, None, ["path", "number"]),
            ("GET", f"{APP}/releases/0", None, None, ["path", "number"]),
            ("GET", f"{APP}/releases/1/diff", {"against": "2147483648"}, None, ["query", "against"]),
            ("GET", f"{APP}/releases/2147483648/diff", {"against": "1"}, None, ["path", "number"]),
            ("POST", f"{APP}/rollback", None, {"to_release": 2**31}, ["body", "to_release"]),
            ("POST", f"{APP}/deployments", None, {"release": 2**31}, ["body", "release"]),
        ],
    )
    async def test_release_numbers_beyond_the_column_name_the_field(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        loc: list[str],
    ) -> None:
        """A number Postgres' integer column cannot hold used to reach the database and come back as a 422
        about a value that "cannot be stored", naming no field."""
        response = await client.request(method, path, params=params, json=body)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"] == loc

    async def test_the_largest_release_number_is_a_plain_404(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get(f"{APP}/releases/2147483647"), 404)


NS = "/api/v1/namespaces/team-a"
CLUSTER = {"name": "other", "api_url": "https://k8s.example.com", "token": "t"}


def probe(**check: Any) -> dict[str, Any]:
    return {"readiness": {"check": {"type": "http", **check}}}


def case(name: str, method: str, path: str, body: Callable[[Any], dict[str, Any]], read: str) -> Any:
    """One body field set to the hostile value; `read` is where to see that nothing changed. Each body is
    valid but for that value, so lax mode would have acted on it."""
    return pytest.param(method, path, body, read, id=name)


def in_cluster(value: Any) -> dict[str, Any]:
    """Lax mode reads 0 as false, then wants an `api_url`; the others as true, then wants none."""
    return {**CLUSTER, "in_cluster": value} if value == 0 else {"name": "other", "in_cluster": value}


FLAGS = [
    case("namespace.allow_exec", "PATCH", NS, lambda v: {"allow_exec": v}, NS),
    case(
        "namespace.require_deploy_approval",
        "PATCH",
        NS,
        lambda v: {"allow_exec": False, "require_deploy_approval": v},
        NS,
    ),
    case("settings.auto_rollback", "PATCH", f"{APP}/settings", lambda v: {"auto_rollback": v}, APP),
    case(
        "cluster.insecure_skip_tls_verify",
        "POST",
        "/api/v1/clusters",
        lambda v: {**CLUSTER, "insecure_skip_tls_verify": v},
        "/api/v1/clusters",
    ),
    case("cluster.in_cluster", "POST", "/api/v1/clusters", in_cluster, "/api/v1/clusters"),
]
NUMBERS = [
    case("rollback.to_release", "POST", f"{APP}/rollback", lambda v: {"to_release": v}, f"{APP}/deployments"),
    case("app.ports", "PATCH", APP, lambda v: {"ports": [{"name": "http", "port": v}]}, APP),
    case(
        "new_app.ports",
        "POST",
        f"{NS}/apps",
        lambda v: {"name": "api", "ports": [{"name": "http", "port": v}]},
        f"{NS}/apps",
    ),
    case("deploy.release", "POST", f"{APP}/deployments", lambda v: {"release": v}, f"{APP}/deployments"),
    case(
        "deploy.ports",
        "POST",
        f"{APP}/deployments",
        lambda v: {**GOOD, "ports": [{"name": "h", "port": v}]},
        f"{APP}/releases",
    ),
    case(
        "deploy.probe_port",
        "POST",
        f"{APP}/deployments",
        lambda v: {**GOOD, "probes": probe(port=v)},
        f"{APP}/releases",
    ),
    case(
        "change.probe_period",
        "POST",
        f"{APP}/releases",
        lambda v: {"probes": {"readiness": {"check": {"type": "tcp", "port": 80}, "period_seconds": v}}},
        f"{APP}/releases",
    ),
    case(
        "change.tcp_port",
        "POST",
        f"{APP}/releases",
        lambda v: {"probes": {"liveness": {"check": {"type": "tcp", "port": v}}}},
        f"{APP}/releases",
    ),
]


class TestJsonTypes:
    """JSON that only looks like a boolean or an integer: pydantic's lax mode read `"allow_exec": "yes"` as
    true and `"to_release": "1"` as 1 (while `"replicas": "3"` was refused). Every body field now takes only
    the JSON type it documents: a 422 naming the field, and nothing changes."""

    @pytest.fixture(autouse=True)
    async def released(self, client: httpx.AsyncClient, web: None) -> None:
        """Release 1 exists, so a rollback or a redeploy that lax mode let through would change something."""
        assert (await client.post(f"{APP}/deployments", json=GOOD)).status_code == 201

    def test_no_request_body_field_is_lax(self) -> None:
        """Structural: a new body field typed `bool`/`int` instead of `JsonBool`/`JsonInt` fails here."""
        assert lax_scalars(ROUTERS) == []

    @pytest.mark.parametrize("value", NOT_BOOLEANS)
    @pytest.mark.parametrize(("method", "path", "body", "read"), FLAGS)
    async def test_a_flag_must_be_a_json_boolean(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, read: str, value: Any
    ) -> None:
        await self.assert_refused_and_unchanged(client, method, path, body(value), read)

    @pytest.mark.parametrize("value", NOT_INTEGERS)
    @pytest.mark.parametrize(("method", "path", "body", "read"), NUMBERS)
    async def test_a_number_must_be_a_json_integer(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, read: str, value: Any
    ) -> None:
        """`true` too: a Python bool is an int, and lax mode took it for 1."""
        await self.assert_refused_and_unchanged(client, method, path, body(value), read)

    @pytest.mark.parametrize("value", ["600", 600.0])
    async def test_a_deadline_must_be_a_json_integer(self, client: httpx.AsyncClient, value: Any) -> None:
        """At least 10 seconds: `"3"`, `3.0` and `true` would be refused as too short anyway."""
        body = {**GOOD, "progress_deadline_seconds": value}
        await self.assert_refused_and_unchanged(client, "POST", f"{APP}/deployments", body, f"{APP}/releases")

    async def test_real_booleans_and_integers_still_work(self, client: httpx.AsyncClient) -> None:
        changed = await client.patch(NS, json={"allow_exec": False, "require_deploy_approval": True})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["allow_exec"], changed.json()["require_deploy_approval"]) == (False, True)
        ported = await client.patch(APP, json={"ports": [{"name": "http", "port": 80}]})
        assert ported.status_code == 200, ported.text
        assert ported.json()["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
        assert (await client.post(f"{APP}/rollback", json={"to_release": 1})).status_code == 201

    @staticmethod
    async def assert_refused_and_unchanged(
        client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], read: str
    ) -> None:
        before = (await client.get(read)).json()
        response = await client.request(method, path, json=body)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["loc"][0] == "body"
        assert (await client.get(read)).json() == before


def is_valid_port_name(name: str) -> bool:
    """apimachinery's `IsValidPortName` (staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go),
    check by check."""
    return (
        len(name) <= 15
        and re.fullmatch(r"[-a-z0-9]+", name) is not None
        and re.search(r"[a-z]", name) is not None
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )


VALID_PORT_NAMES = ["http", "h2c", "a-b", "1-a", "a1-2b", "x", "abcdefghijklmno"]
INVALID_PORT_NAMES = ["8080", "a--b", "-a", "a-", "abcdefghijklmnop", "HTTP", "", "a_b", "a.b", "12-34"]
PORT_BODIES = [
    pytest.param(
        "POST", f"{NS}/apps", lambda v: {"name": "api", "ports": [{"name": v, "port": 80}]}, id="new_app"
    ),
    pytest.param("PATCH", APP, lambda v: {"ports": [{"name": v, "port": 80}]}, id="app"),
    pytest.param(
        "POST", f"{APP}/deployments", lambda v: {**GOOD, "ports": [{"name": v, "port": 80}]}, id="deploy"
    ),
]


class TestPortNames:
    """Port names are IANA_SVC_NAME, as a real apiserver checks container ports and a Service's targetPort:
    Kepler's own rule (a DNS label of 15) let `8080` and `a--b` through to a cluster that refused them."""

    def test_the_schema_rule_is_apimachinerys(self) -> None:
        """Every name of up to 6 characters over letters, digits, '-' and '_' (and some longer ones): the
        pattern and length the OpenAPI schema states accept exactly what `IsValidPortName` accepts."""
        field = create_app(AppServiceSettings()).openapi()["components"]["schemas"]["Port"]["properties"][
            "name"
        ]
        assert (field["minLength"], field["maxLength"]) == (1, 15)
        pattern = re.compile(field["pattern"])
        names = ["".join(t) for n in range(7) for t in itertools.product("a1-_", repeat=n)]
        for name in [*names, *VALID_PORT_NAMES, *INVALID_PORT_NAMES]:
            in_schema = len(name) in range(1, 16) and pattern.search(name) is not None
            assert in_schema == is_valid_port_name(name), name

    @pytest.mark.parametrize("name", VALID_PORT_NAMES)
    @pytest.mark.parametrize(("method", "path", "body"), PORT_BODIES)
    @pytest.mark.usefixtures("web")
    async def test_valid_names_are_accepted(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, name: str
    ) -> None:
        assert is_valid_port_name(name)
        response = await client.request(method, path, json=body(name))
        assert response.status_code in (200, 201), response.text

    @pytest.mark.parametrize("name", INVALID_PORT_NAMES)
    @pytest.mark.parametrize(("method", "path", "body"), PORT_BODIES)
    @pytest.mark.usefixtures("web")
    async def test_invalid_names_are_422_naming_the_field(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, name: str
    ) -> None:
        assert not is_valid_port_name(name)
        response = await client.request(method, path, json=body(name))
        assert_problem(response, 422)
        assert [e["loc"] for e in response.json()["errors"]] == [["body", "ports", 0, "name"]]
