"""A small HTTP/1.1 client for the proxy hot path: keep-alive connections to one upstream origin.

Why not aiohttp here (it still does WebSockets and the gateway's own calls): measured with callgrind,
a request through `ClientSession.request` cost the gateway ~556k instructions against ~120k for
uvicorn's own side of it, about as much CPU as the upstream FastAPI service spends answering; on
the 2-core target machine that capped proxied/direct throughput at ~0.72. Proxying needs far less
than a general client: headers stay the bytes uvicorn parsed, the request head is one `write`, and
the response is parsed by httptools (llhttp, the parser uvicorn itself uses) in C.

Scope, deliberately narrow: one request at a time per connection (no pipelining), plain TCP (the
upstreams are loopback/cluster-internal http:// URLs), bodies streamed both ways with flow control,
interim 1xx responses skipped, HEAD answered without waiting for a body, and a request that finds
its pooled connection already closed by the upstream (a keep-alive race) retried once on a fresh
one when nothing of it can have been processed.
"""

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence

import httptools

Header = tuple[bytes, bytes]
Body = bytes | AsyncIterator[bytes] | None
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_HIGH_WATER = 256 * 1024  # pause reading from the upstream while the client has not taken this much
_LOW_WATER = 64 * 1024
# Not HTTP, or a 101 switch nobody asked for: the upstream is misbehaving.
PROTOCOL_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)
# Everything a request through the pool can fail with (connection, timeout, or protocol).
UPSTREAM_FAILURES = (OSError, *PROTOCOL_ERRORS)


class UpstreamUnavailable(ConnectionError):
    """No connection could be opened (refused, unresolvable, unreachable)."""


class UpstreamClosed(ConnectionError):
    """The upstream closed the connection before the response was complete."""


class ResponseTimeout(TimeoutError):
    """No response headers within the allowed time."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; the exchange state is reset by `begin` for each request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.released_at = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._writable: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[Header] = []
        self.complete = False
        self.head_only = False
        self.keep_alive = False
        self.received_any = False
        self._head: asyncio.Future[None] = self._loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except PROTOCOL_ERRORS as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._head.done() and not self.complete and self._until_eof():
            self.on_message_complete()  # a body without Content-Length or chunking ends at EOF
        elif not self.complete:
            self._fail(UpstreamClosed(str(exc) if exc else "upstream closed the connection"))
        self.resume_writing()  # a writer waiting for the buffer to drain sees `closed` and stops

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # ---- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim (103 Early Hints...): the real response follows
            self.headers = []
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        self._cancel_timer()
        if not self._head.done():
            self._head.set_result(None)
        if self.head_only:  # llhttp cannot be told a HEAD response has no body: finish it here
            self.keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:  # end of an interim response
            return
        self.complete = True
        self._wake()

    # ---- the exchange --------------------------------------------------------------------------

    def begin(self, head: bytes, body: bytes | None, head_only: bool, timeout: float) -> None:
        """Send the request head (and a body that is already complete) in one write."""
        assert self.transport is not None  # noqa: S101  (connected before use; narrows the type)
        self._reset()
        self.head_only = head_only
        self._timer = self._loop.call_later(timeout, self._timed_out, timeout)
        self.transport.write(head + body if body else head)

    async def send_body(self, chunks: AsyncIterator[bytes], chunked: bool) -> None:
        assert self.transport is not None  # noqa: S101  (connected before use; narrows the type)
        async for chunk in chunks:
            if self.closed:
                raise self._error or UpstreamClosed("upstream closed the connection")
            if chunk:
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                if self._writable is not None:
                    await self._writable
        if chunked:
            self.transport.write(b"0\r\n\r\n")

    async def response_head(self) -> None:
        await self._head

    async def read(self) -> bytes:
        """The next piece of the body, as soon as there is any; b"" once the body is complete."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._waiter = self._loop.create_future()
            await self._waiter
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else self._drain_chunks()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < _LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    @property
    def body_done(self) -> bool:
        return self.complete and not self._chunks

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self._chunks

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    # ---- internals -----------------------------------------------------------------------------

    def _drain_chunks(self) -> bytes:
        chunk = b"".join(self._chunks)
        self._chunks.clear()
        return chunk

    def _until_eof(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, timeout: float) -> None:
        self._fail(ResponseTimeout(f"no response within {timeout:g} s"))
        self.close()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: nobody may be waiting yet
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Pool:
    """Keep-alive connections to one origin: idle ones reused most recent first (the warmest), at most
    `limit` in use at once (further requests wait their turn)."""

    def __init__(
        self, host: str, port: int, *, connect_timeout: float, idle_timeout: float, limit: int
    ) -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}".encode()
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._idle: deque[Connection] = deque()
        self._limit = limit
        self._in_use = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection and whether it was reused (only a reused one can hit the keep-alive race)."""
        if self._in_use < self._limit:
            self._in_use += 1
        else:
            await self._wait_turn()
        try:
            return await self._take()
        except BaseException:
            self._free_slot()
            raise

    async def _wait_turn(self) -> None:
        """Wait until a finishing request hands its slot over (the count then already includes us)."""
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._free_slot()  # handed over just as we were cancelled: pass it on
            raise

    def _free_slot(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # skip waiters that were cancelled meanwhile
                turn.set_result(None)
                return
        self._in_use -= 1

    async def _take(self) -> tuple[Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.released_at < self._idle_timeout:
                return conn, True
            conn.close()
        return await self.connect(), False

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(lambda: Connection(loop), self.host, self.port)
        except TimeoutError:
            raise
        except OSError as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        return conn

    async def request(
        self, head: bytes, body: Body, *, chunked: bool, method: str, headers_within: float
    ) -> Connection:
        """Send a request; returns once the response head is in, with the connection still owned by
        the caller (read the body, then `release` it). On failure the slot is already freed."""
        conn, reused = await self.acquire()
        try:
            try:
                await _exchange(conn, head, body, chunked, method == "HEAD", headers_within)
            except UpstreamClosed:
                if not (reused and method in _IDEMPOTENT and not conn.received_any and _replayable(body)):
                    raise
                conn.close()  # the keep-alive race: the upstream closed it as we sent; nothing was done
                conn = await self.connect()
                await _exchange(conn, head, body, chunked, method == "HEAD", headers_within)
        except BaseException:
            self.release(conn)
            raise
        return conn

    def release(self, conn: Connection) -> None:
        """Back to the pool if the exchange ended cleanly, else closed. Always frees the slot."""
        self._free_slot()
        now = time.monotonic()
        if conn.reusable:
            conn.released_at = now
            self._idle.append(conn)
        else:
            conn.close()
        # The least recently used end: connections the upstream closed, or is about to.
        while self._idle and (self._idle[0].closed or now - self._idle[0].released_at >= self._idle_timeout):
            self._idle.popleft().close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def _exchange(
    conn: Connection, head: bytes, body: Body, chunked: bool, head_only: bool, headers_within: float
) -> None:
    conn.begin(head, body if isinstance(body, bytes) else None, head_only, headers_within)
    if body is not None and not isinstance(body, bytes):
        await conn.send_body(body, chunked)
    await conn.response_head()


def _replayable(body: Body) -> bool:
    return body is None or isinstance(body, bytes)


def request_head(method: str, target: bytes, host: bytes, headers: Sequence[Header]) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), target, host)]
    lines += [b"%s: %s\r\n" % (name, value) for name, value in headers]
    lines.append(b"\r\n")
    return b"".join(lines)
