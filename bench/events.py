"""The platform event log's figures (issue #11), measured side by side in one run on a real Postgres
(KEPLER_DATABASE_URL, else an embedded one) and Redis (KEPLER_REDIS_URL, else embedded):

- events.publish_overhead_ms: what publishing adds to a deploy request. The real app-service in-process
  (its lifespan, routes, transaction and job enqueueing; no network hop, which would only add the same to
  both sides), deploys interleaved pairwise with publishing and with publishing replaced by a no-op;
  the figure is the difference of the two sides' medians.
- events.consume_per_s: one consumer working through 50,000 events with the kit's consumer (batches of
  500, the cursor moved in each batch's transaction), each event parsed into its typed model.
- events.fanout_p99_ms: the real alert-service (uvicorn, its own process) with 200 SSE followers of
  `GET /api/v1/events/stream` connected; events are committed one per transaction, 20 a second, by this
  process; each sample is from the commit's return to one follower's receipt of that event's frame
  (200 followers x 100 events). The followers run in this process too (one event loop: what it adds to
  the figure is on our side of the target).

    uv run python bench/events.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import kepler_app_service.events
from kepler_app_service.app import create_app
from kepler_app_service.settings import AppServiceSettings
from kepler_db import App, Cluster, Membership, Namespace, NamespaceStatus, PlatformEvent, Role, User
from kepler_devstack.embedded import port_is_free, start_postgres, start_redis
from kepler_kit.db import create_sessionmaker
from kepler_kit.events import Consumer, StoredEvent, drain, publish, write_pending
from kepler_kit.events.kinds import AppScaled
from kepler_kit.jobs import create_arq_pool
from kepler_kit.testing.database import create_test_database, drop_test_database
from kepler_kit.testing.identities import TEST_SECRET, make_minter
from kepler_kit.testing.services import service_client
from kepler_kubefake import KubeFake

PAIRS, WARMUP = int(os.environ.get("BENCH_PAIRS", 300)), 40
APPS = 2 * (PAIRS + WARMUP)  # one deploy per app: a deploy request as usual, nothing pending to supersede
CONSUME_EVENTS = int(os.environ.get("BENCH_CONSUME_EVENTS", 50_000))
TARGET_OVERHEAD_MS, TARGET_CONSUME, TARGET_FANOUT_P99_MS = 1.0, 5000, 100


def bench(name: str, value: float, unit: str, op: str, target: float) -> None:
    print(f"BENCH {name} {value:.3f} {unit} target {op} {target:g}", flush=True)


def servers(stack: ExitStack) -> tuple[str, str]:
    database, redis = os.environ.get("KEPLER_DATABASE_URL"), os.environ.get("KEPLER_REDIS_URL")
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kepler-bench-")))
    if not database:
        database = stack.enter_context(start_postgres(root / "postgres")).url
    if not redis:
        redis = stack.enter_context(start_redis(root / "redis", persist=False)).url
    return database, redis


async def seed(sessions: async_sessionmaker[AsyncSession], cluster_url: str) -> dict[str, str]:
    async with sessions() as session, session.begin():
        cluster = Cluster(name="bench", api_url=cluster_url, simulated=True)
        admin = User(email="bench@example.com", is_admin=True)
        session.add_all([cluster, admin])
        await session.flush()
        ns = Namespace(name="bench", status=NamespaceStatus.active, cluster_id=cluster.id)
        session.add(ns)
        await session.flush()
        session.add(Membership(user_id=admin.id, namespace_id=ns.id, role=Role.owner))
        apps = [{"namespace_id": ns.id, "name": f"app-{i:03d}", "ports": []} for i in range(APPS)]
        await session.execute(insert(App), apps)
    minter = await make_minter(sessions, TEST_SECRET)
    return minter.identity(admin, "app-service", ttl=3600)


def _silent(*_: Any, **__: Any) -> None:
    """Publishing replaced by nothing: the other side of the comparison."""


async def deploy(client: httpx.AsyncClient, n: int) -> float:
    body = {"image": f"registry.example.com/bench/app:{n}", "replicas": 1}
    started = time.perf_counter()
    response = await client.post(f"/api/v1/namespaces/bench/apps/app-{n % APPS:03d}/deployments", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"deploy failed: {response.status_code} {response.text}")
    return elapsed * 1000


async def publish_overhead(database_url: str, redis_url: str, cluster_url: str) -> None:
    engine = create_async_engine(database_url, pool_size=5)
    sessions = create_sessionmaker(engine)
    headers = await seed(sessions, cluster_url)
    settings = AppServiceSettings(database_url=database_url, redis_url=redis_url, queue_name="bench:events")
    arq = await create_arq_pool(redis_url, "bench:events")
    module = vars(kepler_app_service.events)
    real = module["publish"]
    sides: dict[bool, list[float]] = {True: [], False: []}
    async with service_client(create_app(settings), sessionmaker=sessions, arq=arq) as client:
        client.headers.update(headers)
        for n in range(WARMUP + PAIRS):
            for publishing in (n % 2 == 0, n % 2 == 1):  # alternate which side goes first
                module["publish"] = real if publishing else _silent
                took = await deploy(client, 2 * n + publishing)
                if n >= WARMUP:
                    sides[publishing].append(took)
    module["publish"] = real
    await arq.delete("bench:events")
    await arq.aclose()
    await engine.dispose()
    with_, without = statistics.median(sides[True]), statistics.median(sides[False])
    print(f"deploy request p50: {with_:.2f} ms publishing, {without:.2f} ms not", flush=True)
    bench("events.publish_overhead_ms", with_ - without, "ms", "<=", TARGET_OVERHEAD_MS)


async def consume(database_url: str) -> None:
    engine = create_async_engine(database_url, pool_size=2)
    sessions = create_sessionmaker(engine)
    namespace_id, app_id = uuid.uuid4(), uuid.uuid4()
    rows = [
        {
            "kind": "deployment.succeeded",
            "version": 1,
            "service": "bench",
            "namespace_id": namespace_id,
            "namespace": "bench",
            "app_id": app_id,
            "app": "app",
            "actor": "kepler",
            "data": {
                "deployment_id": str(uuid.uuid4()),
                "release": n,
                "automatic": False,
                "requested_at": "2026-11-30T10:00:00+00:00",
                "release_created_at": "2026-11-30T09:59:00+00:00",
                "committed_at": None,
                "reason": "RolledOut",
                "message": "successfully rolled out",
            },
        }
        for n in range(CONSUME_EVENTS)
    ]
    async with sessions() as session, session.begin():
        for start in range(0, len(rows), 5000):
            await session.execute(insert(PlatformEvent), rows[start : start + 5000])
    handled = 0

    async def handle(_: AsyncSession, events: Sequence[StoredEvent]) -> None:
        nonlocal handled
        handled += sum(1 for e in events if e.event is not None)

    consumer = Consumer(f"bench-{secrets.token_hex(3)}", ["deployment.*"], handle)
    started = time.perf_counter()
    await drain(sessions, consumer, rounds=CONSUME_EVENTS)
    elapsed = time.perf_counter() - started
    await engine.dispose()
    if handled < CONSUME_EVENTS:
        raise SystemExit(f"the consumer handled {handled} of {CONSUME_EVENTS} events")
    bench("events.consume_per_s", handled / elapsed, "events/s", ">=", TARGET_CONSUME)


FOLLOWERS, FANOUT_EVENTS = (
    int(os.environ.get("BENCH_FOLLOWERS", 200)),
    int(os.environ.get("BENCH_FANOUT_EVENTS", 100)),
)


async def follower(
    session: aiohttp.ClientSession,
    url: str,
    arrivals: list[tuple[int, float]],
    ready: asyncio.Event,
) -> None:
    async with session.get(f"{url}/api/v1/events/stream", params={"kind": "app.scaled"}) as stream:
        if stream.status != 200:
            raise SystemExit(f"stream refused: {stream.status} {await stream.text()}")
        ready.set()
        seen = 0
        async for line in stream.content:
            if line.startswith(b"id: "):
                arrivals.append((int(line[4:]), time.perf_counter()))
                seen += 1
                if seen == FANOUT_EVENTS:
                    return


async def publish_one(sessions: async_sessionmaker[AsyncSession], n: int) -> tuple[int, float]:
    async with sessions() as session:
        publish(
            session, AppScaled(namespace="bench", app="app-000", replicas=n, before=None), service="bench"
        )
        await write_pending(session)
        event_id = await session.scalar(select(func.max(PlatformEvent.id)))
        await session.commit()
        return int(event_id or 0), time.perf_counter()


async def fanout(database_url: str, url: str, headers: dict[str, str]) -> None:
    engine = create_async_engine(database_url, pool_size=2)
    sessions = create_sessionmaker(engine)
    committed: dict[int, float] = {}
    arrivals: list[tuple[int, float]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout()
    ) as http:
        readies = [asyncio.Event() for _ in range(FOLLOWERS)]
        tasks = [asyncio.create_task(follower(http, url, arrivals, r)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        await asyncio.sleep(1)
        for n in range(FANOUT_EVENTS):
            event_id, at = await publish_one(sessions, n)
            committed[event_id] = at
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    await engine.dispose()
    got = sorted((arrived - committed[event_id]) * 1000 for event_id, arrived in arrivals)
    print(f"fan-out: {len(got)} deliveries, p50 {got[len(got) // 2]:.1f} ms", flush=True)
    bench("events.fanout_p99_ms", got[int(len(got) * 0.99) - 1], "ms", "<=", TARGET_FANOUT_P99_MS)


def alert_service(stack: ExitStack, database_url: str, redis_url: str) -> str:
    port = next(p for p in range(19200, 19900) if port_is_free(p))
    env = {
        **os.environ,
        "KEPLER_DATABASE_URL": database_url,
        "KEPLER_REDIS_URL": redis_url,
        "KEPLER_SECRET_KEY": TEST_SECRET,
        "KEPLER_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "uvicorn", "kepler_alert_service.app:create_app", "--factory"]
    argv += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(process.terminate)
    for _ in range(600):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
            return f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    raise SystemExit("alert-service did not start")


async def alert_identity(database_url: str) -> dict[str, str]:
    engine = create_async_engine(database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        admin = await session.scalar(select(User).where(User.email == "bench@example.com"))
        assert admin is not None
    headers = (await make_minter(sessions, TEST_SECRET)).identity(admin, "alert-service", ttl=3600)
    await engine.dispose()
    return headers


async def run(database_url: str, redis_url: str) -> None:
    async with KubeFake.start() as fake:  # a deploy asks the cluster first: the fake, with its defaults
        await publish_overhead(database_url, redis_url, fake.url)
    await consume(database_url)


def main() -> None:
    with ExitStack() as stack:
        server_url, redis_url = servers(stack)
        database = create_test_database(server_url, f"kepler_bench_{secrets.token_hex(4)}")
        stack.callback(drop_test_database, database)
        asyncio.run(run(database.url, redis_url))
        url = alert_service(stack, database.url, redis_url)
        asyncio.run(fanout(database.url, url, asyncio.run(alert_identity(database.url))))


if __name__ == "__main__":
    main()
