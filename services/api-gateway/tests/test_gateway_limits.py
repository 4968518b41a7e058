"""Request body limits at the gateway, as a client on the wire sees them (issue #8 item 16).

Written byte for byte over a socket: the point is what the gateway answers *before* the whole body has
been sent, which a client library that sends first and reads later cannot show.
"""

import asyncio
import json
from typing import Any

ONE_MIB = 1024 * 1024
PROXIED = "/api/v1/namespaces/team-a/blob"


async def answer_to(url: str, head: bytes, *parts: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Sends the head and the given parts of the body (not necessarily all of it), then reads the answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        for part in parts:
            writer.write(part)
        await writer.drain()
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").strip().split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
        body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return int(status_line.split()[1]), headers, json.loads(body)


def post(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class TestDeclaredLength:
    async def test_an_unauthenticated_login_of_20_mb_is_refused_before_its_body(
        self, authenticating_gateway_url: str
    ) -> None:
        """Only the head is sent: a gateway that buffered the body first would wait for 20 MB forever."""
        head = post("/api/v1/auth/login", "Content-Length: 20000000")

        status, headers, problem = await answer_to(authenticating_gateway_url, head, b'{"email": "')

        assert (status, headers["content-type"]) == (413, "application/problem+json")
        assert (problem["status"], problem["limit"]) == (413, ONE_MIB)

    async def test_a_proxied_body_over_the_limit_never_reaches_the_upstream(
        self, authenticating_gateway_url: str
    ) -> None:
        head = post(PROXIED, "Authorization: Bearer alice", f"Content-Length: {100 * ONE_MIB}")

        status, _, problem = await answer_to(authenticating_gateway_url, head, b"x" * 1000)

        assert (status, problem["type"]) == (413, "https://kepler.dev/problems/content-too-large")

    async def test_a_body_within_the_limit_passes(self, authenticating_gateway_url: str) -> None:
        body = b"y" * ONE_MIB
        head = post(PROXIED, "Authorization: Bearer alice", f"Content-Length: {len(body)}")

        status, _, digest = await answer_to(authenticating_gateway_url, head, body)

        assert (status, digest["size"]) == (200, ONE_MIB)


class TestChunkedBody:
    async def test_refused_once_it_passes_the_limit(self, authenticating_gateway_url: str) -> None:
        """No length up front: the gateway counts and answers as soon as the limit is passed (the
        client has not sent the terminating chunk, so only an early answer arrives at all)."""
        head = post(PROXIED, "Authorization: Bearer alice", "Transfer-Encoding: chunked")
        parts = [chunk(b"z" * 65536) for _ in range(17)]  # 1 MiB + 64 KiB

        status, _, problem = await answer_to(authenticating_gateway_url, head, *parts)

        assert (status, problem["status"]) == (413, 413)

    async def test_on_the_gateways_own_routes_too(self, authenticating_gateway_url: str) -> None:
        head = post("/api/v1/auth/login", "Transfer-Encoding: chunked")
        parts = [chunk(b" " * 65536) for _ in range(17)]

        status, _, _ = await answer_to(authenticating_gateway_url, head, *parts)

        assert status == 413

    async def test_within_the_limit_is_relayed_whole(self, authenticating_gateway_url: str) -> None:
        head = post(PROXIED, "Authorization: Bearer alice", "Transfer-Encoding: chunked")
        parts = [chunk(b"z" * 65536) for _ in range(4)] + [b"0\r\n\r\n"]

        status, _, digest = await answer_to(authenticating_gateway_url, head, *parts)

        assert (status, digest["size"]) == (200, 4 * 65536)
