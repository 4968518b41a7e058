"""WebSocket sessions through the gateway, driven by an independent client library (websockets)."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets import Subprotocol
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

K8S_V4 = Subprotocol("v4.channel.k8s.io")
K8S_BASE64 = Subprotocol("base64.channel.k8s.io")
GUARD = 10


def exec_url(base: str, pod: str) -> str:
    return base.replace("http://", "ws://") + f"/api/v1/namespaces/team-a/apps/web/pods/{pod}/exec"


@asynccontextmanager
async def exec_session(
    base: str,
    pod: str = "web-1",
    subprotocols: list[Subprotocol] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[ClientConnection]:
    async with connect(
        exec_url(base, pod), subprotocols=subprotocols, additional_headers=headers or {}, compression=None
    ) as ws:
        yield ws


class TestExecSession:
    async def test_subprotocol_negotiated_by_the_upstream(self, gateway_url: str) -> None:
        async with exec_session(gateway_url, subprotocols=[K8S_BASE64, K8S_V4]) as ws:
            assert ws.subprotocol == K8S_V4

    async def test_no_subprotocol_when_none_offered(self, gateway_url: str) -> None:
        async with exec_session(gateway_url) as ws:
            assert ws.subprotocol is None

    async def test_text_and_binary_frames_echo_both_ways(self, gateway_url: str) -> None:
        async with exec_session(gateway_url, subprotocols=[K8S_V4]) as ws:
            await ws.send("ls -la")
            text = await ws.recv()
            await ws.send(b"\x00\x01\xfe\xff" * 1000)
            binary = await ws.recv()

        assert text == "ls -la"
        assert binary == b"\x00\x01\xfe\xff" * 1000

    async def test_request_id_and_forwarded_headers_reach_the_upstream(self, gateway_url: str) -> None:
        headers = {"X-Request-ID": "ws-req-1", "Authorization": "Bearer t"}
        async with exec_session(gateway_url, headers=headers) as ws:
            assert ws.response is not None
            assert ws.response.headers["x-request-id"] == "ws-req-1"
            await ws.send("whoami")
            seen = json.loads(await ws.recv())

        assert seen["x-request-id"] == "ws-req-1"
        assert seen["authorization"] == "Bearer t"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert "sec-websocket-key" in seen  # aiohttp's own handshake, not the client's copied over


class TestClosing:
    async def test_upstream_close_code_and_reason_reach_the_client(self, gateway_url: str) -> None:
        async with exec_session(gateway_url) as ws:
            await ws.send("close:4001")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()

        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")

    async def test_client_close_code_reaches_the_upstream(
        self, gateway_url: str, ws_closes: dict[str, int], gate: tuple[str, asyncio.Event, asyncio.Event]
    ) -> None:
        pod, _, finished = gate
        async with exec_session(gateway_url, pod=pod) as ws:
            await ws.send("hello")
            await ws.recv()
            await ws.close(code=4002, reason="done")

        async with asyncio.timeout(GUARD):
            await finished.wait()
        assert ws_closes[pod] == 4002


class TestRefusals:
    async def test_upstream_refusal_is_passed_on_as_http_status(self, gateway_url: str) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with exec_session(gateway_url, pod="forbidden"):
                pass

        assert refused.value.response.status_code == 403
        assert refused.value.response.headers["content-type"] == "application/problem+json"

    async def test_unreachable_upstream_rejects_the_handshake_with_503(self, broken_gateway_url: str) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with exec_session(broken_gateway_url):
                pass

        response = refused.value.response
        assert response.status_code == 503
        assert b"terminal-service is unavailable" in response.body
