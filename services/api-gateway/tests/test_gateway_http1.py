"""The hot-path HTTP/1.1 client against scripted raw servers: the corners a FastAPI upstream never shows."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httptools
import pytest

from kepler_gateway.http1 import (
    Connection,
    Pool,
    ResponseTimeout,
    UpstreamClosed,
    UpstreamUnavailable,
    request_head,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[Pool, list[int]]]:
    """A server running `handler(reader, writer, connection_number)`; yields a pool to it and the list
    of connection numbers seen (one entry per accepted connection)."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await handler(reader, writer, len(connections))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up, which is the point of several scripts
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool("127.0.0.1", port, connect_timeout=2, idle_timeout=30, limit=4)
    try:
        async with server:
            yield pool, connections
    finally:
        pool.close()


async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(OK)
        await writer.drain()


async def get(pool: Pool, method: str = "GET", body: bytes | None = None, within: float = 5) -> Connection:
    head = request_head(
        method, b"/x", pool.host_header, [(b"content-length", b"%d" % len(body))] if body else []
    )
    return await pool.request(head, body, chunked=False, method=method, headers_within=within)


async def body_of(conn: Connection) -> bytes:
    parts = []
    while chunk := await conn.read():
        parts.append(chunk)
    return b"".join(parts)


async def finish(pool: Pool, conn: Connection) -> None:
    """Read the body, then hand the connection back, as the proxy does."""
    await body_of(conn)
    pool.release(conn)


class TestKeepAlive:
    async def test_sequential_requests_share_one_connection(self) -> None:
        async with raw_server(answer_each) as (pool, connections):
            for _ in range(3):
                conn = await get(pool)
                assert await body_of(conn) == b"ok"
                assert conn.reusable
                pool.release(conn)

        assert connections == [1]

    async def test_connection_close_is_honoured(self) -> None:
        async def close_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")

        async with raw_server(close_each) as (pool, connections):
            for _ in range(2):
                conn = await get(pool)
                await body_of(conn)
                assert not conn.reusable
                pool.release(conn)

        assert connections == [1, 2]

    async def test_stale_connection_is_retried_for_idempotent_requests(self) -> None:
        async def one_then_hang_up(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
        ) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection is dropped

        async with raw_server(one_then_hang_up) as (pool, connections):
            await finish(pool, await get(pool))
            again = await get(pool)

            assert await body_of(again) == b"ok"
            pool.release(again)
        assert connections == [1, 2]

    async def test_stale_connection_is_not_retried_for_post(self) -> None:
        async def one_then_hang_up(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
        ) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")

        async with raw_server(one_then_hang_up) as (pool, _):
            await finish(pool, await get(pool))

            with pytest.raises(UpstreamClosed):
                await get(pool, "POST", b"{}")


class TestPoolLimit:
    async def test_requests_beyond_the_limit_wait_for_a_free_connection(self) -> None:
        async with raw_server(answer_each) as (pool, connections):
            held = [await get(pool) for _ in range(4)]
            fifth = asyncio.create_task(get(pool))
            await asyncio.sleep(0.05)
            assert not fifth.done()

            await finish(pool, held.pop())
            conn = await asyncio.wait_for(fifth, 5)
            for other in [*held, conn]:
                await finish(pool, other)

        assert len(connections) == 4

    async def test_a_cancelled_waiter_does_not_leak_its_turn(self) -> None:
        async with raw_server(answer_each) as (pool, _):
            held = [await get(pool) for _ in range(4)]
            waiter = asyncio.create_task(get(pool))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter

            await finish(pool, held.pop())
            conn = await asyncio.wait_for(get(pool), 5)
            for other in [*held, conn]:
                await finish(pool, other)


class TestResponses:
    async def test_head_response_does_not_wait_for_a_body(self) -> None:
        async def head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            await reader.read()

        async with raw_server(head) as (pool, _):
            conn = await get(pool, "HEAD")

            assert (conn.status, await body_of(conn)) == (200, b"")
            assert (b"content-length", b"1000") in conn.headers
            pool.release(conn)

    async def test_interim_responses_are_skipped(self) -> None:
        async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n" + OK)
            await reader.read()

        async with raw_server(early_hints) as (pool, _):
            conn = await get(pool)

            assert conn.status == 200
            assert conn.headers == [(b"content-length", b"2")]
            assert await body_of(conn) == b"ok"
            pool.release(conn)

    async def test_body_without_length_ends_at_eof(self) -> None:
        async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of ")
            await writer.drain()
            writer.write(b"this")

        async with raw_server(until_close) as (pool, _):
            conn = await get(pool)

            assert await body_of(conn) == b"all of this"
            pool.release(conn)

    async def test_chunked_body_is_decoded(self) -> None:
        async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            await reader.read()

        async with raw_server(chunked) as (pool, _):
            conn = await get(pool)

            assert await body_of(conn) == b"hello world"
            assert conn.reusable
            pool.release(conn)

    async def test_truncated_body_is_an_error(self) -> None:
        async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")

        async with raw_server(truncated) as (pool, _):
            conn = await get(pool)

            with pytest.raises(UpstreamClosed):
                await body_of(conn)
            pool.release(conn)


class TestFailures:
    async def test_refused_connection_is_unavailable(self) -> None:
        async with raw_server(answer_each) as (pool, _):
            pass
        closed = Pool("127.0.0.1", pool.port, connect_timeout=2, idle_timeout=30, limit=1)

        with pytest.raises(UpstreamUnavailable):
            await get(closed)

    async def test_no_headers_in_time_is_a_timeout(self) -> None:
        release = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await release.wait()

        async with raw_server(silent) as (pool, _):
            with pytest.raises(ResponseTimeout):
                await get(pool, within=0.2)
            release.set()

    async def test_not_http_is_a_parser_error(self) -> None:
        async def gibberish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"SPEAKING-GIBBERISH 42\r\n\r\n")
            await reader.read()

        async with raw_server(gibberish) as (pool, _):
            with pytest.raises(httptools.HttpParserError):
                await get(pool)

    async def test_an_unrequested_protocol_switch_is_refused(self) -> None:
        async def switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n")
            await reader.read()

        async with raw_server(switch) as (pool, _):
            with pytest.raises(httptools.HttpParserUpgrade):
                await get(pool)
