"""Plain HTTP through the gateway: what the upstream receives and what the client gets back."""

import gzip
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

RawRequest = Callable[[bytes], Awaitable[tuple[int, dict[str, list[str]], bytes]]]
ECHO = "/api/v1/namespaces/team-a/echo"
MiB = 1024 * 1024


def received_headers(echo: dict[str, Any]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


def expected_bytes(size: int) -> bytes:
    block = hashlib.sha256(b"kepler").digest() * 2048
    return (block * (size // len(block) + 1))[:size]


class TestPassThrough:
    async def test_get_keeps_raw_path_and_query(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/namespaces/team-a/echo?x=1&y=a%2Fb&x=2")

        assert response.status_code == 200
        echo = response.json()
        assert echo["method"] == "GET"
        assert echo["raw_path"] == ECHO
        assert echo["query"] == "x=1&y=a%2Fb&x=2"

    async def test_post_body_and_end_to_end_headers_arrive(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            ECHO, json={"name": "web"}, headers={"X-Custom": "one", "Authorization": "Bearer t"}
        )

        echo = response.json()
        headers = received_headers(echo)
        assert echo["body"] == '{"name":"web"}'
        assert headers["content-type"] == ["application/json"]
        assert headers["content-length"] == [str(len(echo["body"]))]
        assert headers["x-custom"] == ["one"]
        assert headers["authorization"] == ["Bearer t"]

    async def test_hop_by_hop_headers_stay_behind_and_forwarded_headers_are_added(
        self, client: httpx.AsyncClient, gateway_url: str
    ) -> None:
        response = await client.get(
            ECHO,
            headers={
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "1",
                "Proxy-Authorization": "Basic Zm9v",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
            },
        )

        headers = received_headers(response.json())
        for hop in ("connection", "x-secret-hop", "proxy-authorization", "keep-alive", "te"):
            assert hop not in headers
        assert headers["host"] != [gateway_url.removeprefix("http://")]
        assert headers["x-forwarded-host"] == [gateway_url.removeprefix("http://")]
        assert headers["x-forwarded-proto"] == ["http"]
        assert headers["x-forwarded-for"] == ["127.0.0.1"]

    async def test_a_clients_chain_is_not_passed_on(self, client: httpx.AsyncClient) -> None:
        """Issue #8 item 15: no proxy is trusted by default, so the upstream hears the real peer only,
        never the address a client wrote."""
        response = await client.get(ECHO, headers={"X-Forwarded-For": "6.6.6.6, 7.7.7.7"})

        assert received_headers(response.json())["x-forwarded-for"] == ["127.0.0.1"]

    async def test_aiohttp_adds_no_headers_of_its_own(self, raw_request: RawRequest) -> None:
        request = b"POST " + ECHO.encode() + b" HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nabcd"

        status, _, body = await raw_request(request)

        assert status == 200
        names = set(received_headers(json.loads(body)))
        assert names == {
            "host",
            "content-length",
            "x-forwarded-proto",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-request-id",
        }

    async def test_upstream_status_and_headers_come_back(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/namespaces/team-a/cookie")

        assert response.status_code == 200
        assert response.headers["set-cookie"].startswith("session=alice-secret")
        assert len(response.headers.get_list("date")) == 1
        assert len(response.headers.get_list("server")) == 1

    async def test_no_cookie_jar_shared_between_clients(self, client: httpx.AsyncClient) -> None:
        await client.get("/api/v1/namespaces/team-a/cookie")
        client.cookies.clear()

        response = await client.get("/api/v1/namespaces/team-a/cookie")

        assert response.json() == {"cookie": None}

    async def test_compressed_body_passes_through_undecoded(self, raw_request: RawRequest) -> None:
        request = (
            b"GET /api/v1/namespaces/team-a/gzipped HTTP/1.1\r\nHost: gw\r\nAccept-Encoding: gzip\r\n\r\n"
        )

        status, headers, body = await raw_request(request)

        assert status == 200
        assert headers["content-encoding"] == ["gzip"]
        assert gzip.decompress(body) == b'{"compressed": true}'


class TestLargeBodies:
    async def test_streamed_upload_of_8_mib(self, client: httpx.AsyncClient) -> None:
        payload = expected_bytes(8 * MiB)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 256 * 1024):
                yield payload[start : start + 256 * 1024]

        response = await client.post("/api/v1/namespaces/team-a/blob", content=chunks())

        assert response.json() == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}

    async def test_upload_with_content_length(self, client: httpx.AsyncClient) -> None:
        payload = expected_bytes(3 * MiB + 17)

        response = await client.post("/api/v1/namespaces/team-a/blob", content=payload)

        assert response.json() == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}

    async def test_download_of_8_mib(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/namespaces/team-a/blob", params={"size": 8 * MiB})

        assert response.headers["content-length"] == str(8 * MiB)
        assert response.content == expected_bytes(8 * MiB)


class TestRequestId:
    async def test_client_id_reaches_upstream_and_comes_back_once(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ECHO, headers={"X-Request-ID": "req-abc-123"})

        assert response.headers.get_list("x-request-id") == ["req-abc-123"]
        assert received_headers(response.json())["x-request-id"] == ["req-abc-123"]

    async def test_generated_when_missing_and_the_same_on_both_sides(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ECHO)

        [rid] = response.headers.get_list("x-request-id")
        assert received_headers(response.json())["x-request-id"] == [rid]
        assert len(rid) == 32

    async def test_forged_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ECHO, headers={"X-Request-ID": "evil id\twith spaces"})

        [rid] = response.headers.get_list("x-request-id")
        assert rid != "evil id\twith spaces"
        assert received_headers(response.json())["x-request-id"] == [rid]
