"""Streams pass through as they are produced: each upstream stream waits for the test to release its
second chunk, so a gateway that buffered would never deliver the first one (the test would time out)."""

import asyncio

import httpx

Gate = tuple[str, asyncio.Event, asyncio.Event]
DEADLOCK_GUARD = 10  # seconds; only reached if the gateway buffers


class TestServerSentEvents:
    async def test_first_event_arrives_before_the_second_is_sent(
        self, client: httpx.AsyncClient, gate: Gate
    ) -> None:
        gate_id, release, _ = gate
        async with client.stream(
            "GET", "/api/v1/namespaces/team-a/events", params={"gate": gate_id}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            chunks = response.aiter_raw()
            async with asyncio.timeout(DEADLOCK_GUARD):
                first = await anext(chunks)
            assert first == b"event: first\ndata: 1\n\n"
            assert not release.is_set()

            release.set()
            rest = b"".join([chunk async for chunk in chunks])

        assert rest == b"event: second\ndata: 2\n\n"

    async def test_client_leaving_ends_the_upstream_stream(
        self, client: httpx.AsyncClient, gate: Gate
    ) -> None:
        gate_id, release, finished = gate
        async with client.stream(
            "GET", "/api/v1/namespaces/team-a/events", params={"gate": gate_id}
        ) as response:
            async with asyncio.timeout(DEADLOCK_GUARD):
                await anext(response.aiter_raw())

        async with asyncio.timeout(DEADLOCK_GUARD):
            await finished.wait()  # the upstream generator was closed although it was never released
        assert not release.is_set()


class TestChunkedLogs:
    async def test_log_lines_arrive_one_by_one(self, client: httpx.AsyncClient, gate: Gate) -> None:
        gate_id, release, _ = gate
        path = f"/api/v1/namespaces/team-a/apps/web/pods/{gate_id}/logs"
        async with client.stream("GET", path, params={"follow": "true"}) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            chunks = response.aiter_raw()
            async with asyncio.timeout(DEADLOCK_GUARD):
                first = await anext(chunks)
            release.set()
            rest = b"".join([chunk async for chunk in chunks])

        assert (first, rest) == (b"line 1\n", b"line 2\n")
