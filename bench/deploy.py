"""Platform overhead of deploying, and the cost of listing and watching many apps (issue #4's figures).

Runs the real app-service (uvicorn) and its worker (arq) as processes against the Kubernetes contract fake
with its real-cluster defaults (containers take 2 s to start, rolling updates go in waves), on Postgres and
Redis from KEPLER_DATABASE_URL / KEPLER_REDIS_URL or embedded ones. Callers are authenticated as the gateway
would authenticate them.

- deploy: 200 deploys over 50 apps, each app deploying 4 times in a row, one deploy in flight
  (BENCH_IN_FLIGHT=n for more: on 2 cores shared by the API, the worker, the fake's simulated
  controller and kubelet, Postgres and Redis, more in flight only adds queueing, by Little's law);
  the CPU each process spends per deploy is printed too. Latency is from
  the API call until the deployment's "progressing" event, i.e. the objects were applied, as a client
  following it over SSE sees it; deploys/s over the whole run.
- list: 10,000 apps in 100 namespaces; p99 of a page of 50 at the service.
- watch: RSS of the worker while its live-status watch follows the Deployments of those 10,000 apps.

    uv run python bench/deploy.py
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from kepler_db import App, Cluster, Membership, Namespace, NamespaceStatus, Role, User
from kepler_devstack import procfs
from kepler_devstack.embedded import port_is_free, start_postgres, start_redis
from kepler_kit.db import create_sessionmaker
from kepler_kit.testing.database import create_test_database, drop_test_database
from kepler_kit.testing.identities import TEST_SECRET, make_minter

ROOT = Path(__file__).resolve().parent.parent
APPS, DEPLOYS_PER_APP = int(os.environ.get("BENCH_APPS", 50)), int(os.environ.get("BENCH_DEPLOYS", 4))
IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", 1))
LIST_NAMESPACES, LIST_APPS_PER_NAMESPACE, LIST_REQUESTS = 100, 100, 500


def free_port() -> int:
    for port in range(19100, 19900):
        if port_is_free(port):
            return port
    raise SystemExit("no free port")


def servers(stack: ExitStack) -> tuple[str, str]:
    database, redis = os.environ.get("KEPLER_DATABASE_URL"), os.environ.get("KEPLER_REDIS_URL")
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kepler-bench-")))
    if not database:
        database = stack.enter_context(start_postgres(root / "postgres")).url
    if not redis:
        redis = stack.enter_context(start_redis(root / "redis", persist=False)).url
    return database, redis


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)


def start_fake() -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "kepler_kubefake", "--port", "0"]  # the real-cluster defaults
    fake = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert fake.stdout is not None
    return fake, fake.stdout.readline().strip()


async def seed(database_url: str, fake_url: str) -> dict[str, str]:
    """Cluster, admin, 50 deployable apps, and 10,000 apps to list; returns the admin's identity headers."""
    engine = create_async_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        cluster = Cluster(name="bench", api_url=fake_url, simulated=True)
        admin = User(email="bench@example.com", is_admin=True)
        session.add_all([cluster, admin])
        await session.flush()
        rows = [("deploy", 0, APPS)] + [("list", i, LIST_APPS_PER_NAMESPACE) for i in range(LIST_NAMESPACES)]
        for prefix, index, count in rows:
            ns = Namespace(name=f"{prefix}-{index:03d}", status=NamespaceStatus.active, cluster_id=cluster.id)
            session.add(ns)
            await session.flush()
            session.add(Membership(user_id=admin.id, namespace_id=ns.id, role=Role.owner))
            apps = [_app(ns.id, f"app-{i:03d}") for i in range(count)]
            await session.execute(insert(App), apps)
    minter = await make_minter(sessionmaker, TEST_SECRET)
    headers = minter.identity(admin, "app-service", ttl=3600)
    await engine.dispose()
    return headers


def _app(namespace_id: uuid.UUID, name: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "namespace_id": namespace_id,
        "name": name,
        "git_url": "https://git.example.com/bench.git",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "description": "",
        "default_branch": "main",
        "dockerfile_path": "Dockerfile",
    }


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("app-service did not become ready")


async def one_deploy(session: aiohttp.ClientSession, url: str, app: str, n: int) -> float:
    base = f"{url}/api/v1/namespaces/deploy-000/apps/{app}"
    started = time.perf_counter()
    body = {"image": f"registry.example.com/bench/{app}:{n}", "replicas": 1}
    async with session.post(f"{base}/deployments", json=body) as response:
        if response.status != 201:
            raise SystemExit(f"deploy failed: {response.status} {await response.text()}")
        deployment = await response.json()
    async with session.get(f"{base}/deployments/{deployment['id']}/events") as stream:
        async for line in stream.content:
            if line.startswith(b"data: ") and json.loads(line[6:]).get("status") in (
                "progressing",
                "succeeded",
                "failed",
                "rolled_back",
            ):
                return time.perf_counter() - started
    raise SystemExit("the event stream ended before the objects were applied")


async def deploy_phase(session: aiohttp.ClientSession, url: str) -> tuple[list[float], float]:
    """Each app deploys 4 times in a row; a burst from CI, with IN_FLIGHT deploys at most under way."""
    in_flight = asyncio.Semaphore(IN_FLIGHT)

    async def app_run(i: int) -> list[float]:
        timings = []
        for n in range(DEPLOYS_PER_APP):
            async with in_flight:
                timings.append(await one_deploy(session, url, f"app-{i:03d}", n))
        return timings

    started = time.perf_counter()
    runs = await asyncio.gather(*(app_run(i) for i in range(APPS)))
    return [t for run in runs for t in run], time.perf_counter() - started


async def list_phase(session: aiohttp.ClientSession, url: str) -> list[float]:
    timings = []
    for i in range(LIST_REQUESTS):
        namespace = f"list-{secrets.randbelow(LIST_NAMESPACES):03d}"
        params = {"limit": "50"}
        started = time.perf_counter()
        async with session.get(f"{url}/api/v1/namespaces/{namespace}/apps", params=params) as response:
            page = await response.json()
        timings.append(time.perf_counter() - started)
        assert len(page["items"]) == 50, page
        del i
    return timings


async def apply_listed_deployments(fake_url: str) -> None:
    """The 10,000 listed apps' Deployments (0 replicas), as Kepler labels them, for the watch to follow."""
    semaphore = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def apply(ns: str, app: str) -> None:
            labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app}
            managed = {**labels, "app.kubernetes.io/managed-by": "kepler"}
            body = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": app, "namespace": ns, "labels": managed},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": app, "image": "nginx"}]},
                    },
                },
            }
            path = f"{fake_url}/apis/apps/v1/namespaces/{ns}/deployments/{app}?fieldManager=kepler&force=true"
            async with (
                semaphore,
                session.patch(
                    path, data=json.dumps(body), headers={"Content-Type": "application/apply-patch+yaml"}
                ) as response,
            ):
                assert response.status in (200, 201), await response.text()

        for i in range(LIST_NAMESPACES):
            ns = f"list-{i:03d}"
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            async with session.patch(
                f"{fake_url}/api/v1/namespaces/{ns}?fieldManager=kepler&force=true",
                data=json.dumps(namespace),
                headers={"Content-Type": "application/apply-patch+yaml"},
            ) as response:
                assert response.status in (200, 201)
            await asyncio.gather(*(apply(ns, f"app-{j:03d}") for j in range(LIST_APPS_PER_NAMESPACE)))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def figure(name: str, value: float, unit: str, op: str, target: str) -> None:
    print(f"BENCH {name} {value:.1f} {unit} target {op} {target}", flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    url: str, headers: dict[str, str], fake_url: str, worker: subprocess.Popen[bytes], api: int, fake: int
) -> None:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as session:
        await wait_ready(session, url)
        pids = {"api": api, "worker": worker.pid, "fake": fake}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        latencies, elapsed = await deploy_phase(session, url)
        for name, pid in pids.items():  # where a deploy's CPU goes (the fake's is the cluster's work)
            per_deploy = (cpu_seconds(pid) - before[name]) * 1000 / len(latencies)
            figure(f"deploy.{name}_cpu_ms", per_deploy, "ms", "<=", "none")
        if os.environ.get("BENCH_VERBOSE"):
            print("latencies", [round(x * 1000) for x in latencies], file=sys.stderr)
        figure("deploy.p50_ms", statistics.median(latencies) * 1000, "ms", "<=", "100")
        figure("deploy.p99_ms", percentile(latencies, 99) * 1000, "ms", "<=", "300")
        figure("deploy.per_s", len(latencies) / elapsed, "deploys/s", ">=", "none")
        listing = await list_phase(session, url)
        figure("apps.list_p99_ms", percentile(listing, 99) * 1000, "ms", "<=", "30")
        figure("apps.list_p50_ms", statistics.median(listing) * 1000, "ms", "<=", "none")
    await apply_listed_deployments(fake_url)
    await asyncio.sleep(35)  # the worker's watch rescans clusters every 30 s, then lists and follows them
    worker_mb = procfs.rss_kib(worker.pid) / 1024
    figure("apps.rss_mb", worker_mb, "MB", "<=", "250")
    figure("apps.api_rss_mb", procfs.rss_kib(api) / 1024, "MB", "<=", "none")


def main() -> None:
    logs = tempfile.mkdtemp(prefix="kepler-bench-logs-")  # kept: a failed run is explained there
    print(f"logs in {logs}", file=sys.stderr)
    with ExitStack() as stack:
        server_database, redis = servers(stack)
        database = create_test_database(server_database, f"kepler_bench_{secrets.token_hex(4)}")
        stack.callback(drop_test_database, database)
        fake, fake_url = start_fake()
        stack.callback(fake.terminate)
        headers = asyncio.run(seed(database.url, fake_url))
        port = free_port()
        env = {
            **os.environ,
            "KEPLER_DATABASE_URL": database.url,
            "KEPLER_REDIS_URL": redis,
            "KEPLER_SECRET_KEY": TEST_SECRET,
            "KEPLER_LOG_LEVEL": "WARNING",
            "KEPLER_QUEUE_NAME": f"kepler:bench:{secrets.token_hex(4)}",
        }
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "kepler_app_service.app:create_app",
            "--factory",
            "--port",
            str(port),
        ]
        api = start([*argv, "--no-access-log", "--log-level", "warning"], env, Path(logs) / "api.log")
        stack.callback(api.terminate)
        worker = start(
            [sys.executable, "-m", "kepler_kit.worker", "kepler_app_service.tasks.WorkerSettings"],
            env,
            Path(logs) / "w.log",
        )
        stack.callback(worker.terminate)
        asyncio.run(measure(f"http://127.0.0.1:{port}", headers, fake_url, worker, api.pid, fake.pid))


if __name__ == "__main__":
    main()
