"""What a kit service's OpenAPI document promises: every status an operation can answer with, so a client
generated from it (or a conformance run over it) meets no undocumented status."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.access import public, require
from kepler_kit.errors import BadRequest, error_responses
from kepler_kit.pagination import PageParams
from kepler_kit.permissions import Action
from kepler_kit.service_app import create_service_app
from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.services import service_client

router = APIRouter(prefix="/api/v1/doc")


class Thing(BaseModel):
    name: str


@router.post("/things", status_code=201, responses=error_responses(BadRequest))
async def create_thing(body: Thing, _: Any = require(Action.namespace_create)) -> Thing:
    return body


@router.get("/things")
async def list_things(page: PageParams, _: Any = require(Action.namespace_list)) -> list[Thing]:
    return []


@router.get("/things/{name}")
async def get_thing(name: str, _: None = public()) -> Thing:
    return Thing(name=name)


@router.get("/away", status_code=302, responses={302: {"description": "Elsewhere"}})
async def go_away(_: None = public()) -> RedirectResponse:
    return RedirectResponse("https://example.com/", status_code=302)


def document() -> dict[str, Any]:
    app = create_service_app(service="doc-test", title="doc", settings=KeplerSettings(), routers=[router])
    return app.openapi()


def statuses(path: str, method: str) -> set[str]:
    return set(document()["paths"][path][method]["responses"])


class TestImpliedStatuses:
    def test_a_protected_operation_with_a_body_documents_401_403_400_413_and_503(self) -> None:
        assert {"201", "400", "401", "403", "413", "422", "500", "503"} <= statuses(
            "/api/v1/doc/things", "post"
        )

    def test_a_route_declared_error_keeps_its_own_description(self) -> None:
        responses = document()["paths"]["/api/v1/doc/things"]["post"]["responses"]
        assert responses["400"]["description"] == "Bad request"

    def test_a_paged_list_documents_the_bad_cursor_400(self) -> None:
        responses = document()["paths"]["/api/v1/doc/things"]["get"]["responses"]
        assert "cursor" in responses["400"]["description"]
        assert "413" not in responses

    def test_a_public_operation_has_no_401_and_a_path_resource_may_be_missing(self) -> None:
        found = statuses("/api/v1/doc/things/{name}", "get")
        assert {"404", "503"} <= found
        assert not {"401", "403", "400", "413"} & found

    def test_the_kit_status_operation_documents_401(self) -> None:
        assert {"401", "403", "503"} <= statuses("/api/v1/status/doc-test", "get")

    def test_errors_are_problems_and_503_says_when_to_retry(self) -> None:
        unavailable = document()["paths"]["/api/v1/doc/things"]["get"]["responses"]["503"]
        assert list(unavailable["content"]) == ["application/problem+json"]
        assert "Retry-After" in unavailable["headers"]


class TestRedirects:
    def test_a_redirect_has_a_location_and_no_body(self) -> None:
        redirect = document()["paths"]["/api/v1/doc/away"]["get"]["responses"]["302"]
        assert "content" not in redirect
        assert redirect["headers"]["Location"]["required"] is True


@pytest.fixture
async def client(
    settings_overrides: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], arq: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_service_app(
        service="doc-test", title="doc", settings=KeplerSettings(**settings_overrides), routers=[router]
    )
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        yield client


class TestMethodNotAllowed:
    async def test_allow_lists_every_method_of_the_path(self, client: httpx.AsyncClient) -> None:
        """FastAPI makes one route per method; Starlette's 405 named only the first one's."""
        response = await client.delete("/api/v1/doc/things")

        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["allow"] == "GET, POST"


class TestBuiltAtStartUp:
    async def test_the_document_exists_before_the_first_request(
        self, settings_overrides: dict[str, Any]
    ) -> None:
        """Built on the first request, it took seconds on a busy machine: the gateway stopped waiting and
        served a merged `/openapi.json` without the service (the make-run end-to-end test caught it)."""
        app = create_service_app(
            service="doc-test", title="doc", settings=KeplerSettings(**settings_overrides), routers=[router]
        )
        assert app.openapi_schema is None
        async with app.router.lifespan_context(app):
            assert app.openapi_schema is not None
