"""Header rules that the live tests cannot reach from loopback (an untrusted peer, odd Connection values)."""

from typing import Any

import pytest

from kepler_gateway.headers import downstream_headers, upstream_headers
from kepler_kit.identity import TRUSTED_PROXIES, TrustedProxies


def scope(
    *headers: tuple[bytes, bytes],
    client: str = "198.51.100.9",
    scheme: str = "http",
    trusted: tuple[str, ...] = (),
) -> dict[str, Any]:
    state = {TRUSTED_PROXIES: TrustedProxies(trusted)}
    return {"headers": list(headers), "client": (client, 50000), "scheme": scheme, "state": state}


class TestUpstreamHeaders:
    def test_an_untrusted_peers_chain_is_replaced_by_the_peer(self) -> None:
        """Issue #8 item 15: what a client wrote in X-Forwarded-For must not reach the upstream as if the
        gateway vouched for it; only the address the gateway itself saw is forwarded."""
        headers = dict(upstream_headers(scope((b"x-forwarded-for", b"6.6.6.6, 7.7.7.7")), b"rid"))

        assert headers[b"x-forwarded-for"] == b"198.51.100.9"

    def test_a_trusted_proxys_chain_gets_the_peer_appended(self) -> None:
        forwarded = scope((b"x-forwarded-for", b"203.0.113.7"), trusted=("198.51.100.0/24",))

        headers = dict(upstream_headers(forwarded, b"rid"))

        assert headers[b"x-forwarded-for"] == b"203.0.113.7, 198.51.100.9"

    def test_https_and_wss_are_forwarded_as_https(self) -> None:
        assert dict(upstream_headers(scope(scheme="https"), b"rid"))[b"x-forwarded-proto"] == b"https"
        assert dict(upstream_headers(scope(scheme="wss"), b"rid"))[b"x-forwarded-proto"] == b"https"

    def test_headers_named_by_connection_are_dropped_wherever_they_appear(self) -> None:
        headers = upstream_headers(
            scope(
                (b"x-early", b"1"), (b"connection", b"X-Early, x-late"), (b"x-late", b"2"), (b"x-kept", b"3")
            ),
            b"rid",
        )

        assert [name for name, _ in headers if name.startswith(b"x-") and not name.startswith(b"x-forw")] == [
            b"x-kept",
            b"x-request-id",
        ]

    def test_client_request_id_is_replaced_by_the_gateway_one(self) -> None:
        headers = upstream_headers(scope((b"x-request-id", b"from-client")), b"chosen")

        assert [value for name, value in headers if name == b"x-request-id"] == [b"chosen"]

    def test_identity_headers_replace_the_clients_and_may_not_break_lines(self) -> None:
        forged = scope((b"x-kepler-identity", b"forged"), (b"accept", b"*/*"))

        headers = upstream_headers(forged, b"rid", [("X-Kepler-Identity", "signed")])

        assert [value for name, value in headers if name == b"x-kepler-identity"] == [b"signed"]
        with pytest.raises(ValueError, match="line break"):
            upstream_headers(forged, b"rid", [("x-kepler-identity", "a\r\nx-admin: yes")])

    def test_websocket_handshake_headers_are_left_to_aiohttp(self) -> None:
        handshake = [
            (b"sec-websocket-key", b"k"),
            (b"sec-websocket-protocol", b"v4"),
            (b"origin", b"https://a"),
        ]

        names = [name for name, _ in upstream_headers(scope(*handshake), b"rid", websocket=True)]

        assert b"origin" in names
        assert not [name for name in names if name.startswith(b"sec-websocket")]


class TestDownstreamHeaders:
    def test_hop_by_hop_date_server_and_request_id_are_replaced(self) -> None:
        raw = [
            (b"Content-Type", b"application/json"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"keep-alive, X-Internal"),
            (b"X-Internal", b"secret"),
            (b"Date", b"Mon"),
            (b"Server", b"uvicorn"),
            (b"X-Request-ID", b"upstream"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ]

        assert downstream_headers(raw, b"rid") == [
            (b"x-request-id", b"rid"),
            (b"content-type", b"application/json"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
