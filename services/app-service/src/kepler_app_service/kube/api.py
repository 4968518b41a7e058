"""Clusters (platform admins): where namespaces run. Credentials go in sealed and never come back out."""

import asyncio
import ipaddress
import re
import uuid
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from fastapi import APIRouter, Request, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from kepler_app_service.kube import repository
from kepler_db import Cluster as ClusterRow
from kepler_kit.access import Access, require
from kepler_kit.audit import record_audit
from kepler_kit.contracts import Service
from kepler_kit.db import DbSession
from kepler_kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    error_responses,
)
from kepler_kit.names import NamespaceName
from kepler_kit.pagination import Page, PageParams, page_of
from kepler_kit.permissions import Action
from kepler_kit.text import Multiline, Secret, SingleLine
from kepler_kube.base import ClusterUnavailable, tls_problems
from kepler_kube.registry import ClusterRegistry

router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])
DENIED = (Unauthorized, Forbidden)
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)


def _dialable(url: SplitResult) -> bool:
    try:
        host, _ = url.hostname, url.port  # .port raises on a port out of range or not a number
    except ValueError:
        return False
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:  # a name, then: not all digits (`0`, `10.1`), which clients read as bad IPv4
        return bool(_DNS_NAME.match(host)) and not host.replace(".", "").isdigit()


Pem = Annotated[
    str,
    # ASCII only (RFC 7468): the TLS library refuses anything else with a TypeError, not an SSL error
    StringConstraints(
        max_length=16384, pattern=r"^-----BEGIN [A-Z ]+-----[\t\n\r -~]+-----END [A-Z ]+-----\s*$"
    ),
    Multiline,
]


class ClusterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NamespaceName
    api_url: (
        Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s/]+(/\S*)?$"), SingleLine]
        | None
    ) = None
    in_cluster: bool = Field(False, description="Use the service account Kepler itself runs under")
    ca_data: Pem | None = None
    insecure_skip_tls_verify: bool = False
    token: Secret | None = Field(None, max_length=8192)
    client_cert: Pem | None = None
    client_key: Secret | None = Field(None, max_length=16384)

    @field_validator("api_url")
    @classmethod
    def _reachable_host(cls, url: str | None) -> str | None:
        """A host a client can dial: an IP address or a DNS name (`http://0` is neither, and would
        fail every call to the cluster instead of its registration). Nothing else a client would refuse
        or misread: credentials (shown back in every listing, and aiohttp refuses them next to a token),
        a query or fragment, a `%` that is not an escape."""
        if url is None:
            return url
        if "@" in urlsplit(url).netloc:
            raise ValueError("must not carry credentials: give a `token` or a client certificate")
        if "?" in url or "#" in url:
            raise ValueError("must not have a query or a fragment")
        if _BAD_ESCAPE.search(url):
            raise ValueError("has a `%` that is not followed by two hex digits")
        if not _dialable(urlsplit(url)):
            raise ValueError("must name the API server by a DNS name or an IP address, with a valid port")
        return url

    @field_validator("token")
    @classmethod
    def _bearer_token(cls, token: SecretStr | None) -> SecretStr | None:
        """RFC 6750's b64token: anything else would break the Authorization header of every call."""
        if token is not None and not _B64TOKEN.match(token.get_secret_value()):
            raise ValueError("must be a bearer token (letters, digits and -._~+/, then optional =)")
        return token

    @model_validator(mode="after")
    def _one_way_in(self) -> "ClusterCreate":
        if self.in_cluster == bool(self.api_url):
            raise ValueError(
                "give either `api_url` (with a token or a client certificate) or `in_cluster: true`"
            )
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("a client certificate needs its key, and the other way round")
        return self


class Cluster(BaseModel):
    id: uuid.UUID
    name: str
    api_url: str | None
    in_cluster: bool
    simulated: bool
    has_token: bool
    has_client_certificate: bool
    reachable: bool | None = Field(
        description="What the last call to it found (false too when its credentials do not load); "
        "null when not called yet"
    )
    detail: str | None


class ClusterPage(Page[Cluster]):
    pass


async def _out(row: ClusterRow, registry: ClusterRegistry) -> Cluster:
    health = await registry.verify(row)
    return Cluster(
        id=row.id,
        name=row.name,
        api_url=row.api_url,
        in_cluster=row.in_cluster,
        simulated=row.simulated,
        has_token=row.token_sealed is not None,
        has_client_certificate=row.client_cert_sealed is not None,
        reachable=health.ok if health else None,
        detail=health.detail if health else None,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*DENIED, Conflict, ValidationFailed),
    summary="Register a cluster",
)
async def create_cluster(
    body: ClusterCreate, request: Request, session: DbSession, access: Access = require(Action.cluster_manage)
) -> Cluster:
    registry: ClusterRegistry = request.state.clusters
    if await repository.name_taken(session, body.name):
        raise Conflict(f"A cluster named '{body.name}' exists.")
    await _credentials_load(body)
    row = ClusterRow(
        name=body.name,
        api_url=body.api_url,
        in_cluster=body.in_cluster,
        ca_data=body.ca_data,
        insecure_skip_tls_verify=body.insecure_skip_tls_verify,
        token_sealed=registry.seal(body.token.get_secret_value() if body.token else None),
        client_cert_sealed=registry.seal(body.client_cert),
        client_key_sealed=registry.seal(body.client_key.get_secret_value() if body.client_key else None),
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    record_audit(
        session,
        access.principal,
        service=Service.APP.value,
        action="cluster.create",
        target_type="cluster",
        target=row.name,
    )
    return await _out(row, registry)


async def _credentials_load(body: ClusterCreate) -> None:
    """Builds the TLS context the client will build, now: a certificate or key that does not load is the
    caller's error on that field, not a failure of every later call to the cluster."""
    key = body.client_key.get_secret_value() if body.client_key else None
    problems = await asyncio.to_thread(tls_problems, body.ca_data, body.client_cert, key)
    if problems:
        raise ValidationFailed(
            "; ".join(f"body.{field}: {why}" for field, why in problems.items()),
            errors=[{"loc": ["body", f], "msg": why, "type": "credentials"} for f, why in problems.items()],
        )


@router.get(
    "", responses=error_responses(*DENIED, BadRequest), summary="List clusters and whether they answer"
)
async def list_clusters(
    request: Request, session: DbSession, page: PageParams, _: Access = require(Action.cluster_manage)
) -> ClusterPage:
    rows = await repository.list_clusters(session, page.limit, page.key(str))
    registry: ClusterRegistry = request.state.clusters
    out = {row.id: await _out(row, registry) for row in rows[: page.limit]}
    return page_of(ClusterPage, rows, page.limit, lambda row: [row.name], lambda row: out[row.id])


@router.post(
    "/{cluster_id}/check",
    responses=error_responses(*DENIED, NotFound),
    summary="Call the cluster now and report",
)
async def check_cluster(
    cluster_id: uuid.UUID, request: Request, session: DbSession, _: Access = require(Action.cluster_manage)
) -> Cluster:
    registry: ClusterRegistry = request.state.clusters
    row = await session.get(ClusterRow, cluster_id)
    if row is None:
        raise NotFound("No such cluster.")
    try:
        await (await registry.client(row)).ping()
        registry.reached(row.name)
    except ClusterUnavailable as exc:
        registry.failed(exc)
    return await _out(row, registry)


@router.delete(
    "/{cluster_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(*DENIED, NotFound, Conflict),
    summary="Forget a cluster no namespace uses",
)
async def delete_cluster(
    cluster_id: uuid.UUID,
    request: Request,
    session: DbSession,
    access: Access = require(Action.cluster_manage),
) -> None:
    row = await session.get(ClusterRow, cluster_id)
    if row is None:
        raise NotFound("No such cluster.")
    await _unused(session, row, request.state.settings.default_cluster)
    await session.delete(row)
    await request.state.clusters.forget(row)
    record_audit(
        session,
        access.principal,
        service=Service.APP.value,
        action="cluster.delete",
        target_type="cluster",
        target=row.name,
    )


async def _unused(session: DbSession, row: ClusterRow, default: str | None) -> None:
    """Deleting a cluster in use would strand its namespaces (and their running apps) without a cluster."""
    is_default = row.name == default
    using = await repository.namespaces_on(session, row.id, is_default)
    if is_default:
        raise Conflict(
            f"'{row.name}' is the platform's default cluster (KEPLER_APP_SERVICE_DEFAULT_CLUSTER)"
            + (f"; namespaces on it: {', '.join(using)}." if using else "."),
            namespaces=using,
        )
    if using:
        raise Conflict(f"Namespaces still run on '{row.name}': {', '.join(using)}.", namespaces=using)
