"""Which headers cross the gateway, in each direction (RFC 9110 §7.6.1 hop-by-hop rules)."""

from collections.abc import Iterable, Sequence

from starlette.types import Scope

from kepler_kit.identity import NO_PROXIES, TRUSTED_PROXIES, TrustedProxies

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection"}
)
# Set by the gateway itself, so a client's value must not reach the upstream (`expect`: uvicorn
# already answered `100-continue` to the client; the upstream gets the body without asking).
_REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
}
# aiohttp negotiates the upstream handshake itself; `protocols=` carries the client's subprotocols.
_WEBSOCKET_DROP = _REQUEST_DROP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
}
# The gateway's uvicorn writes its own Date/Server, and the request id is added once by the proxy.
_RESPONSE_DROP = HOP_BY_HOP | {b"proxy-authenticate", b"date", b"server", b"x-request-id"}
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})

Header = tuple[bytes, bytes]


def _connection_listed(value: bytes) -> set[bytes]:
    """Extra headers a `Connection: foo` names are hop-by-hop too (rare, so only checked when present)."""
    return {token.strip().lower() for token in value.split(b",")} - _CONNECTION_OPTIONS - {b""}


def upstream_headers(
    scope: Scope, request_id: bytes, identity: Sequence[tuple[str, str]] = (), *, websocket: bool = False
) -> list[Header]:
    """The client's end-to-end headers (still the bytes uvicorn parsed) plus X-Forwarded-* and the id."""
    drop = _WEBSOCKET_DROP if websocket else _REQUEST_DROP
    out: list[Header] = []
    host = forwarded_for = b""
    listed: set[bytes] = set()
    for name, value in scope["headers"]:
        if name in drop or name.startswith(b"proxy-"):
            if name == b"host":
                host = value
            elif name == b"x-forwarded-for":
                forwarded_for = forwarded_for + b", " + value if forwarded_for else value
            elif name == b"connection":
                listed = _connection_listed(value)
            continue
        out.append((name, value))
    if listed:
        out = [(name, value) for name, value in out if name not in listed]
    if identity:
        out = _replace(out, identity)
    out += _forwarded(scope, host, forwarded_for)
    out.append((b"x-request-id", request_id))
    return out


def _replace(headers: list[Header], identity: Sequence[tuple[str, str]]) -> list[Header]:
    """Identity headers come only from the authenticator: a client's copy of them is dropped, not merged."""
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in identity]
    if any(b"\r" in value or b"\n" in value for _, value in encoded):
        raise ValueError("an identity header value may not contain a line break")
    names = {name for name, _ in encoded}
    # An empty value removes the client's header and sends none (e.g. no credentials past the gateway).
    return [(n, v) for n, v in headers if n not in names] + [(n, v) for n, v in encoded if v]


def _forwarded(scope: Scope, host: bytes, forwarded_for: bytes) -> list[Header]:
    """X-Forwarded-For: the chain a trusted proxy sent with its peer appended; from anyone else only
    the peer, so nothing a client wrote reaches the upstream as if the gateway had vouched for it."""
    client = scope.get("client")
    chain = b""
    if client:
        peer = client[0]
        trusted: TrustedProxies = scope.get("state", {}).get(TRUSTED_PROXIES, NO_PROXIES)
        chain = peer.encode()
        if forwarded_for and trusted.networks and trusted.trusts(peer):
            chain = forwarded_for + b", " + chain
    out = [(b"x-forwarded-proto", b"https" if scope["scheme"] in ("https", "wss") else b"http")]
    if chain:
        out.append((b"x-forwarded-for", chain))
    if host:
        out.append((b"x-forwarded-host", host))
    return out


def as_text(headers: Iterable[Header]) -> list[tuple[str, str]]:
    """For aiohttp (the WebSocket path), which wants str headers."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def downstream_headers(raw: Iterable[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers minus hop-by-hop ones; names lower-cased as ASGI requires."""
    out = [(b"x-request-id", request_id)]
    listed: set[bytes] = set()
    for name, value in raw:
        lower = name.lower()
        if lower in _RESPONSE_DROP:
            if lower == b"connection":
                listed = _connection_listed(value)
            continue
        out.append((lower, value))
    if listed:
        out = [(name, value) for name, value in out if name not in listed]
    return out
