"""Clusters as an admin sees them: credentials checked when registered, a cluster whose credentials cannot be
used reported (never a 500), and clusters that namespaces run on kept from deletion."""

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from kepler_app_service.app import create_app
from kepler_app_service.settings import AppServiceSettings
from kepler_db import Cluster, User
from kepler_kit.testing.identities import Minter
from kepler_kit.testing.services import service_client
from kepler_kubefake import KubeFake

CLUSTERS = "/api/v1/clusters"
PROBLEM = "application/problem+json"
# PEM-shaped, as the schema asks, but no certificate or key inside: what a careless paste looks like.
NOT_A_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
NOT_A_KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


def certificate(name: str) -> tuple[str, str]:
    """A self-signed certificate and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return cert.public_bytes(Encoding.PEM).decode(), key_pem.decode()


def cluster(name: str = "prod", **extra: Any) -> dict[str, Any]:
    return {"name": name, "api_url": "https://k8s.example.com:6443", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def rejected_fields(client: httpx.AsyncClient, body: dict[str, Any]) -> list[list[Any]]:
    response = await client.post(CLUSTERS, json=body)
    assert (response.status_code, response.headers["content-type"]) == (422, PROBLEM), response.text
    return [error["loc"] for error in response.json()["errors"]]


class TestRegisterCluster:
    async def test_certificates_that_do_not_load_are_422_on_their_field(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """Accepted before, they made every later call that built the cluster's client a 500."""
        ca, _ = certificate("ca")
        cert, _ = certificate("kepler")
        _, other_key = certificate("someone-else")
        assert await rejected_fields(client, cluster(ca_data=NOT_A_CERTIFICATE)) == [["body", "ca_data"]]
        bad_cert = cluster(ca_data=ca, client_cert=NOT_A_CERTIFICATE, client_key=NOT_A_KEY)
        assert await rejected_fields(client, bad_cert) == [["body", "client_cert"]]
        assert await rejected_fields(client, cluster(client_cert=cert, client_key=NOT_A_KEY)) == [
            ["body", "client_key"]
        ]
        assert await rejected_fields(client, cluster(client_cert=cert, client_key=other_key)) == [
            ["body", "client_key"]
        ]
        assert await session.scalar(select(func.count()).select_from(Cluster)) == 0

    async def test_certificates_that_load_are_accepted(self, client: httpx.AsyncClient) -> None:
        ca, _ = certificate("ca")
        cert, key = certificate("kepler")
        response = await client.post(CLUSTERS, json=cluster(ca_data=ca, client_cert=cert, client_key=key))
        assert response.status_code == 201, response.text
        assert response.json()["has_client_certificate"] is True

    async def test_a_token_that_cannot_be_a_header_is_422(self, client: httpx.AsyncClient) -> None:
        assert await rejected_fields(client, cluster(token="abc\r\nX-Injected: 1")) == [["body", "token"]]

    async def test_a_certificate_that_is_not_ascii_is_422(self, client: httpx.AsyncClient) -> None:
        """Schemathesis sent `-----BEGIN S-----\u00df-----END S-----`: the TLS library raised a TypeError."""
        pem = "-----BEGIN CERTIFICATE-----\n\u00df\n-----END CERTIFICATE-----\n"
        assert await rejected_fields(client, cluster(ca_data=pem)) == [["body", "ca_data"]]
        assert await rejected_fields(client, cluster(in_cluster=True, api_url=None, ca_data=pem)) == [
            ["body", "ca_data"]
        ]

    async def test_an_api_url_no_client_can_dial_is_422(self, client: httpx.AsyncClient) -> None:
        """Schemathesis registered `http://0`: accepted, then every check of the cluster was a 500
        (aiohttp: "0 is not a canonical IPv4 address")."""
        for url in ("http://0", "https://10.1", "https://a_b.example", "https://x:99999"):
            assert await rejected_fields(client, cluster(api_url=url)) == [["body", "api_url"]], url

    async def test_an_api_url_a_client_would_refuse_or_misread_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """`http://u:p@127.0.0.1:1` was accepted: its password shown by every listing, then every call on the
        cluster a 500 (aiohttp refuses credentials in the URL next to a token). A query, a fragment or a
        `%` that is not an escape were accepted too."""
        for url in (
            "http://u:p@127.0.0.1:1",
            "https://admin@k8s.example.com",
            "https://k8s.example.com/?a=1",
            "https://k8s.example.com#top",
            "http://127.0.0.1:1/%zz",
        ):
            assert await rejected_fields(client, cluster(api_url=url, token="t")) == [["body", "api_url"]], (
                url
            )
        assert await session.scalar(select(func.count()).select_from(Cluster)) == 0
        escaped = await client.post(
            CLUSTERS, json=cluster(api_url="https://k8s.example.com/a%2Fb", token="t")
        )
        assert escaped.status_code == 201, escaped.text


class TestListClusters:
    async def test_pages_like_every_other_list(self, client: httpx.AsyncClient) -> None:
        """It returned a bare array."""
        for name in ("c-one", "c-three", "c-two"):
            assert (await client.post(CLUSTERS, json=cluster(name, token="t"))).status_code == 201
        first = (await client.get(CLUSTERS, params={"limit": 2})).json()
        assert [c["name"] for c in first["items"]] == ["c-one", "c-three"]
        rest = (await client.get(CLUSTERS, params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert ([c["name"] for c in rest["items"]], rest["next_cursor"]) == (["c-two"], None)
        assert (await client.get(CLUSTERS, params={"cursor": "!!"})).status_code == 400


async def broken_cluster(session: AsyncSession, name: str = "broken") -> Cluster:
    """A cluster stored with a CA that does not load: registered before the check existed, or by hand."""
    row = Cluster(name=name, api_url="https://127.0.0.1:9", ca_data=NOT_A_CERTIFICATE)
    session.add(row)
    await session.flush()
    return row


class TestCredentialsThatDoNotLoad:
    async def test_calls_are_503_naming_the_cluster_never_500(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """Each of these built the client and answered 500 with `ssl.SSLError`."""
        row = await broken_cluster(session)
        ns = await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "broken"})
        assert ns.status_code == 201
        app = {"name": "web", "git_url": "https://g.example/web.git"}
        assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201
        web = "/api/v1/namespaces/team-a/apps/web"
        calls = [
            client.post(f"{web}/deployments", json={"image": "registry.example.com/web:1"}),
            client.get(f"{web}/pods"),
            client.post("/api/v1/namespaces/team-a/imports", json={}),
        ]
        for call in calls:
            response = await call
            assert (response.status_code, response.headers["content-type"]) == (503, PROBLEM), response.text
            problem = response.json()
            assert problem["cluster"] == "broken"
            assert "bad credentials" in problem["detail"]
            assert "ca_data" in problem["detail"]
        checked = (await client.post(f"{CLUSTERS}/{row.id}/check")).json()
        assert checked["reachable"] is False
        assert "ca_data" in checked["detail"]

    async def test_readiness_and_the_namespace_report_it(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """Readiness said "all reachable" with such a cluster bound, before anything had called it."""
        await broken_cluster(session)
        assert (
            await client.post("/api/v1/namespaces", json={"name": "team-a", "cluster": "broken"})
        ).status_code == 201
        ready = await client.get("/readyz")
        assert ready.status_code == 200  # one cluster down does not make app-service unready
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert checks["clusters"]["detail"].startswith("unreachable: broken (")
        assert "ca_data" in checks["clusters"]["detail"]
        listed = (await client.get(CLUSTERS)).json()["items"]
        assert [(c["name"], c["reachable"]) for c in listed] == [("broken", False)]
        namespace = (await client.get("/api/v1/namespaces/team-a")).json()
        assert namespace["cluster"]["name"] == "broken"
        assert namespace["cluster"]["reachable"] is False
        assert "ca_data" in namespace["cluster"]["detail"]

    async def test_a_request_the_http_library_refuses_to_build_is_a_503(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """A cluster stored with credentials in its URL and a token (registered before the check existed):
        aiohttp raised a ValueError building each request, and every call was a 500."""
        created = await client.post(CLUSTERS, json=cluster("userinfo", token="t"))
        assert created.status_code == 201, created.text
        row = await session.get_one(Cluster, uuid.UUID(created.json()["id"]))
        row.api_url = f"http://u:p@127.0.0.1:{free_port()}"
        await session.flush()
        ns = {"name": "team-a", "cluster": "userinfo"}
        assert (await client.post("/api/v1/namespaces", json=ns)).status_code == 201
        app = {"name": "web", "git_url": "https://g.example/web.git"}
        assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201
        pods = await client.get("/api/v1/namespaces/team-a/apps/web/pods")
        assert (pods.status_code, pods.headers["content-type"]) == (503, PROBLEM), pods.text
        assert pods.json()["cluster"] == "userinfo"
        checked = (await client.post(f"{CLUSTERS}/{row.id}/check")).json()
        assert checked["reachable"] is False


class TestClusterRefusesTheCredentials:
    async def test_a_wrong_token_is_unreachable_never_a_500(self, client: httpx.AsyncClient) -> None:
        """The client read the API server's 401 Status as data: the check said reachable (it asked the
        public `/version`) and listing pods failed with a KeyError, a 500."""
        async with KubeFake.start(token="the-right-one") as fake:
            body = {"name": "prod", "api_url": fake.url, "token": "a-wrong-one"}
            created = (await client.post(CLUSTERS, json=body)).json()
            checked = (await client.post(f"{CLUSTERS}/{created['id']}/check")).json()
            assert checked["reachable"] is False
            assert "401" in checked["detail"]
            ns = {"name": "team-a", "cluster": "prod"}
            assert (await client.post("/api/v1/namespaces", json=ns)).status_code == 201
            app = {"name": "web", "git_url": "https://g.example/web.git"}
            assert (await client.post("/api/v1/namespaces/team-a/apps", json=app)).status_code == 201
            pods = await client.get("/api/v1/namespaces/team-a/apps/web/pods")
            assert (pods.status_code, pods.headers["content-type"]) == (503, PROBLEM), pods.text
            assert pods.json()["cluster"] == "prod"


class TestReadiness:
    async def test_a_cluster_that_does_not_answer_is_reported(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """Readiness reported only what earlier calls had found: "all reachable" for a cluster nothing had
        called. It now calls clusters it has not heard from, in the background, and says what they said."""
        session.add(Cluster(name="down", api_url=f"http://127.0.0.1:{free_port()}"))
        await session.flush()
        detail = ""
        for _ in range(200):
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            detail = {c["name"]: c for c in ready.json()["checks"]}["clusters"]["detail"]
            if detail.startswith("unreachable: down ("):
                break
            await asyncio.sleep(0.05)
        assert detail.startswith("unreachable: down ("), detail

    async def test_database_down_is_a_failed_check_not_a_500(
        self, settings_overrides: dict[str, Any], arq: ArqRedis
    ) -> None:
        """The clusters check read the database unguarded, so `/readyz` answered 500."""
        dead = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/kepler")
        app = create_app(AppServiceSettings(**settings_overrides))
        try:
            async with service_client(app, sessionmaker=async_sessionmaker(dead), arq=arq) as client:
                ready = await client.get("/readyz")
        finally:
            await dead.dispose()
        assert ready.status_code == 503
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert checks["clusters"]["ok"] is False
        assert checks["clusters"]["detail"].startswith("cannot read the clusters")


@pytest.fixture
async def sandbox_client(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    minter: Minter,
    admin: User,
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin of a platform whose default cluster is `sandbox`, as `KEPLER_SANDBOX=1 make run` sets up."""
    app = create_app(AppServiceSettings(**settings_overrides, default_cluster="sandbox"))
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        client.headers.update(minter.identity(admin, "app-service"))
        yield client


class TestDeleteCluster:
    async def test_refused_while_namespaces_run_on_it(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """A fuzzer deleted the sandbox cluster out from under its namespaces; now it names them."""
        created = (await client.post(CLUSTERS, json=cluster("prod", token="t"))).json()
        for name in ("team-b", "team-a"):
            body = {"name": name, "cluster": "prod"}
            assert (await client.post("/api/v1/namespaces", json=body)).status_code == 201
        refused = await client.delete(f"{CLUSTERS}/{created['id']}")
        assert (refused.status_code, refused.headers["content-type"]) == (409, PROBLEM)
        assert refused.json()["namespaces"] == ["team-a", "team-b"]
        assert "team-a, team-b" in refused.json()["detail"]
        assert await session.get(Cluster, created["id"]) is not None

    async def test_the_default_cluster_is_refused(self, sandbox_client: httpx.AsyncClient) -> None:
        """Namespaces bound to no cluster run on the default one: it is in use even when none names it."""
        created = (await sandbox_client.post(CLUSTERS, json=cluster("sandbox", token="t"))).json()
        refused = await sandbox_client.delete(f"{CLUSTERS}/{created['id']}")
        assert refused.status_code == 409
        assert "default cluster" in refused.json()["detail"]
        assert (await sandbox_client.post("/api/v1/namespaces", json={"name": "team-a"})).status_code == 201
        again = await sandbox_client.delete(f"{CLUSTERS}/{created['id']}")
        assert (again.status_code, again.json()["namespaces"]) == (409, ["team-a"])

    async def test_an_unused_cluster_goes(self, client: httpx.AsyncClient, session: AsyncSession) -> None:
        created = (await client.post(CLUSTERS, json=cluster("spare", token="t"))).json()
        assert (await client.delete(f"{CLUSTERS}/{created['id']}")).status_code == 204
        assert await session.get(Cluster, created["id"]) is None
