"""The merged document lists what the gateway itself adds to an operation's answers: a proxied operation
can fail upstream (502) or time out (504), and the gateway's own redirects are redirects, not JSON."""

from typing import Any

import httpx

from kepler_gateway.openapi import merge_openapi

NAMESPACES = "/api/v1/namespaces"


def source(path: str) -> dict[str, Any]:
    ok = {"200": {"description": "OK"}}
    return {"paths": {path: {"get": {"operationId": path.rsplit("/", 1)[-1], "responses": ok}}}}


class TestProxiedOperations:
    def test_operations_of_proxied_services_document_502_and_504(self) -> None:
        merged = merge_openapi(
            {"api-gateway": source("/api/v1/me"), "app-service": source(NAMESPACES)}, own="api-gateway"
        ).document

        proxied = merged["paths"][NAMESPACES]["get"]["responses"]
        assert {"502", "504"} <= set(proxied)
        assert list(proxied["502"]["content"]) == ["application/problem+json"]
        assert not {"502", "504"} & set(merged["paths"]["/api/v1/me"]["get"]["responses"])

    async def test_the_served_document_has_them_too(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()

        assert {"502", "504"} <= set(document["paths"][NAMESPACES]["get"]["responses"])


class TestOwnOperations:
    async def test_oidc_login_is_a_redirect_with_a_location_and_no_body(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()

        redirect = document["paths"]["/api/v1/auth/oidc/login"]["get"]["responses"]["302"]
        assert "content" not in redirect
        assert "Location" in redirect["headers"]

    async def test_platform_status_documents_401_and_503(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()

        assert {"401", "403", "503"} <= set(document["paths"]["/api/v1/status"]["get"]["responses"])

    async def test_login_documents_the_unparsable_body_400_and_the_size_413(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()

        login = document["paths"]["/api/v1/auth/login"]["post"]["responses"]
        assert {"400", "413", "429", "503"} <= set(login)
        assert "401" in login  # wrong credentials, declared by the route
