"""A cross-service job contract end to end: the gateway enqueues `SyncIdpMemberships` after an OIDC login,
and app-service's worker receives it validated and turns the user's groups into namespace roles; a
malformed payload in app-service's queue is rejected by the task without stopping the worker."""

import uuid
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_app_service.settings import AppServiceSettings
from kepler_app_service.tasks import FUNCTIONS
from kepler_db import Membership, Namespace, NamespaceStatus, Role, User
from kepler_gateway.identity.settings import AuthSettings
from kepler_gateway.settings import GatewaySettings
from kepler_gateway.testing import gateway_client
from kepler_kit.contracts import Service
from kepler_kit.jobs import JobRequest, enqueue
from kepler_kit.logging import configure_logging
from kepler_kit.testing.identities import TEST_SECRET
from kepler_kit.testing.oidc_provider import running_provider
from kepler_kit.testing.services import run_burst_worker

GROUP_ROLES = {"ops-team": "ops:maintainer"}


async def sign_in_with_oidc(gateway: httpx.AsyncClient) -> None:
    start = await gateway.get("/api/v1/auth/oidc/login")
    async with httpx.AsyncClient() as browser:  # the user's browser at the provider
        consent = await browser.get(start.headers["location"])
    callback = httpx.URL(consent.headers["location"])
    response = await gateway.get(f"{callback.path}?{callback.query.decode()}")
    assert response.status_code == 200, response.text


async def run_app_service_worker(
    redis_url: str, queue_name: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> int:
    return await run_burst_worker(
        FUNCTIONS,
        redis_url=redis_url,
        queue_name=queue_name,
        sessionmaker=sessionmaker,
        service=Service.APP,
        settings=AppServiceSettings(idp_group_roles=GROUP_ROLES),
    )


async def test_the_gateways_job_reaches_app_services_task_validated(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    arq: ArqRedis,
    redis_url: str,
    queue_name: str,
) -> None:
    session.add(Namespace(name="ops", status=NamespaceStatus.active))
    await session.commit()
    settings = GatewaySettings(**{**settings_overrides, "secret_key": TEST_SECRET})
    async with running_provider() as provider:
        provider.user = {**provider.user, "sub": "idp-7", "email": "ops@example.com", "groups": ["ops-team"]}
        auth = AuthSettings(
            oidc_issuer=provider.url,
            oidc_client_id=provider.client_id,
            oidc_client_secret=provider.client_secret,
            oidc_group_claim="groups",
        )
        async with gateway_client(settings, sessionmaker, arq, auth) as gateway:
            await sign_in_with_oidc(gateway)

    assert await run_app_service_worker(redis_url, queue_name, sessionmaker) == 1
    user = await session.scalar(select(User).where(User.email == "ops@example.com"))
    assert user is not None
    membership = await session.scalar(select(Membership).where(Membership.user_id == user.id))
    assert membership is not None
    assert (membership.role, membership.source) == (Role.maintainer, "idp")


@pytest.mark.parametrize("payload", [("not-a-uuid",), (), (str(uuid.uuid4()), "extra"), (42,)])
async def test_a_malformed_payload_is_rejected_and_the_worker_goes_on(
    payload: tuple[object, ...],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    redis_url: str,
    queue_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As a sender with a bug (or an older one) would enqueue it: the task refuses it once, says why, and
    the next job in the queue still runs."""
    configure_logging("app-service-worker")
    malformed = f"malformed:{uuid.uuid4()}"  # job ids outlive a test in Redis: each run enqueues a new one
    assert await arq.enqueue_job("sync_idp_memberships", *payload, _job_id=malformed, _queue_name=queue_name)
    assert await enqueue(arq, JobRequest("sync_idp_memberships", (str(uuid.uuid4()),), None), queue_name)

    assert await run_app_service_worker(redis_url, queue_name, sessionmaker) == 1
    logged = capsys.readouterr().err
    assert "job_rejected" in logged
    assert "sync_idp_memberships" in logged
