"""What the gateway costs: the same small GET directly against app-service and through the gateway.

One uvicorn worker for the upstream and one for the gateway (each its own process, uvloop + httptools,
no access log), and a load generator in a third process: a raw HTTP/1.1 keep-alive client on uvloop
protocols, cheap enough per request (~25-35 us of CPU) that it leaves the cores to the servers, as wrk
would. With 2+ CPUs the upstream is pinned to one and the gateway and load generator to another (see
`Placement`; `--no-pin` to let the scheduler decide). Direct and proxied runs alternate in short
back-to-back pairs (order flipped each pair) and the medians over the pairs are reported; every
process runs at nice -10 when allowed, so other work on the machine disturbs the comparison less.
The CPU each server spends per request is printed too: unlike throughput it barely moves with
whatever else the machine is doing.

- throughput: 64 connections, requests/s proxied ÷ requests/s direct (`gateway.throughput_ratio`)
- latency: 1 connection, p50 and p99 proxied minus direct (`gateway.added_p50_ms`, `gateway.added_p99_ms`)

The upstream is a minimal kit service (`create_service_app`: the middleware, error handling and lifespan
every Kepler service has) with one public, database-free route in app-service's path space. The real
app-service has no such GET: its `/api/v1/status/app-service` needs a token and runs database and
Redis checks per request, which would measure Postgres and Redis (sharing the same 2 cores) rather
than the gateway.
Postgres and Redis: KEPLER_DATABASE_URL / KEPLER_REDIS_URL, else the local defaults, else embedded ones.

    uv run python bench/gateway.py [--pairs 8] [--seconds 0.75]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/v1/namespaces/bench/ping"  # routed to app-service by the gateway
CONNECTIONS = 64
WARMUP_S = 0.2
PRIORITY = -10
TARGET_RATIO, TARGET_P50_MS, TARGET_P99_MS = 0.8, 0.6, 2.0
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


# ---- the upstream -------------------------------------------------------------------------------------


def minimal_upstream() -> Any:
    """uvicorn factory for the upstream process."""
    from fastapi import APIRouter

    from kepler_kit.service_app import create_service_app
    from kepler_kit.settings import KeplerSettings

    router = APIRouter()

    @router.get(PATH)
    async def ping() -> dict[str, str]:
        return {"service": "app-service", "status": "ok"}

    return create_service_app(
        service="app-service", title="bench", settings=KeplerSettings(), routers=[router]
    )


# ---- load generator (runs in its own process: `gateway.py --load PORT CONNECTIONS SECONDS`) -----------


class _Connection(asyncio.Protocol):
    """Sends the request, waits for the whole response (Content-Length framed), repeats until `deadline`."""

    def __init__(
        self, request: bytes, deadline: float, latencies: list[float], done: asyncio.Future[None]
    ) -> None:
        self.request, self.deadline, self.latencies, self.done = request, deadline, latencies, done
        self.buffer = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
        if match is None:
            raise RuntimeError(f"response without Content-Length: {self.buffer[:200]!r}")
        total = end + 4 + int(match.group(1))
        if len(self.buffer) < total:
            return
        if not self.buffer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response: {self.buffer[:200]!r}")
        now = time.perf_counter()
        self.latencies.append(now - self.sent)
        self.buffer = self.buffer[total:]
        if now < self.deadline:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("server closed the connection"))


def _same(protocol: _Connection) -> _Connection:
    return protocol


def _request(port: int, path: str, authorization: str) -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n{auth}\r\n".encode()


async def _load(
    port: int, connections: int, seconds: float, warmup: float, path: str = PATH, authorization: str = ""
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = _request(port, path, authorization)

    async def run(duration: float) -> tuple[list[float], float]:
        latencies: list[float] = []
        deadline = time.perf_counter() + duration
        futures = [loop.create_future() for _ in range(connections)]
        started = time.perf_counter()
        transports = []
        for future in futures:
            protocol = _Connection(request, deadline, latencies, future)
            transport, _ = await loop.create_connection(functools.partial(_same, protocol), "127.0.0.1", port)
            transports.append(transport)
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
        for transport in transports:
            transport.close()
        return latencies, elapsed

    warm, _ = await run(warmup)
    cpu_before = time.process_time()
    latencies, elapsed = await run(seconds)
    cpu_us = (time.process_time() - cpu_before) * 1e6 / len(latencies)
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "requests": len(latencies),
        "total_requests": len(warm) + len(latencies),
        "client_cpu_us": cpu_us,
    }


class _Schedule:
    """Interleaved A/B load: the request switches between two kinds every `slice_s` on the same
    connections, and completions are counted per slice. A slice's rate counts only what completes after
    `settle_s`, once the requests of the previous kind still in flight have drained."""

    def __init__(
        self, requests: list[bytes], start: float, slice_s: float, slices: int, settle_s: float
    ) -> None:
        self.requests, self.start, self.slice_s, self.settle_s = requests, start, slice_s, settle_s
        self.deadline = start + slice_s * slices
        self.settled = [0] * slices  # completions after the settle time
        self.total = [0] * slices  # all completions: the servers' CPU per request is split by these

    def request(self, now: float) -> bytes:
        index = int((now - self.start) // self.slice_s)
        return self.requests[index % 2] if index >= 0 else self.requests[0]

    def completed(self, now: float) -> None:
        offset = now - self.start
        index = int(offset // self.slice_s)
        if 0 <= index < len(self.total):
            self.total[index] += 1
            if offset - index * self.slice_s >= self.settle_s:
                self.settled[index] += 1


class _Switching(_Connection):
    def __init__(self, schedule: _Schedule, done: asyncio.Future[None]) -> None:
        super().__init__(schedule.requests[0], schedule.deadline, [], done)
        self.schedule = schedule

    def _send(self) -> None:
        now = time.perf_counter()
        if self.sent:
            self.schedule.completed(now)
        self.request = self.schedule.request(now)
        super()._send()


async def _load_interleaved(
    port: int, connections: int, paths: list[str], authorizations: list[str], spec: dict[str, Any]
) -> dict[str, Any]:
    """One run of `spec["slices"]` alternating slices (A, B, A, …) after a warm-up on A, with the CPU
    of `spec["pids"]` sampled at every slice boundary."""
    loop = asyncio.get_running_loop()
    requests = [_request(port, path, auth) for path, auth in zip(paths, authorizations, strict=True)]
    slices, slice_s, pids = int(spec["slices"]), float(spec["slice_s"]), list(spec["pids"])
    schedule = _Schedule(
        requests, time.perf_counter() + WARMUP_S + 0.3, slice_s, slices, float(spec["settle_s"])
    )
    futures = [loop.create_future() for _ in range(connections)]
    transports = []
    for future in futures:
        protocol = _Switching(schedule, future)
        transport, _ = await loop.create_connection(functools.partial(_same, protocol), "127.0.0.1", port)
        transports.append(transport)
    cpu: list[list[float]] = []
    for index in range(slices + 1):
        await asyncio.sleep(max(0.0, schedule.start + index * slice_s - time.perf_counter()))
        cpu.append([cpu_seconds(pid) for pid in pids])
    await asyncio.gather(*futures)
    for transport in transports:
        transport.close()
    window = slice_s - schedule.settle_s
    return {
        "rps": [count / window for count in schedule.settled],
        "requests": schedule.total,
        "cpu_s": [
            [after - before for before, after in zip(cpu[i], cpu[i + 1], strict=True)] for i in range(slices)
        ],
    }


def load_main() -> None:
    """The load generator process: one JSON line in (a run's parameters), one JSON line out."""
    import uvloop

    for line in sys.stdin:
        message = json.loads(line)
        if isinstance(message, dict):  # interleaved A/B
            result = uvloop.run(
                _load_interleaved(
                    int(message["port"]),
                    int(message["connections"]),
                    message["paths"],
                    message["authorizations"],
                    message,
                )
            )
        else:
            port, connections, seconds, path, authorization = message
            result = uvloop.run(
                _load(int(port), int(connections), float(seconds), WARMUP_S, path, authorization)
            )
        print(json.dumps(result), flush=True)


class LoadGenerator:
    """A separate process, started once, so each measurement pays no interpreter start-up."""

    def __init__(self, cpus: set[int] | None) -> None:
        argv = [sys.executable, __file__, "--load"]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        place(self.process.pid, cpus)

    def run(
        self, port: int, connections: int, seconds: float, path: str = PATH, authorization: str = ""
    ) -> dict[str, float]:
        result: dict[str, float] = self._ask([port, connections, seconds, path, authorization])
        return result

    def interleaved(
        self,
        port: int,
        connections: int,
        paths: tuple[str, str],
        authorizations: tuple[str, str],
        *,
        slices: int,
        slice_s: float,
        settle_s: float,
        pids: list[int],
    ) -> dict[str, list[Any]]:
        """A/B slices on the same connections (see `_Schedule`): per slice, the settled requests/s, all
        requests completed, and the CPU seconds each of `pids` spent."""
        message = {
            "port": port,
            "connections": connections,
            "paths": list(paths),
            "authorizations": list(authorizations),
            "slices": slices,
            "slice_s": slice_s,
            "settle_s": settle_s,
            "pids": pids,
        }
        result: dict[str, list[Any]] = self._ask(message)
        return result

    def _ask(self, message: object) -> Any:
        """One JSON line to the load generator, its one JSON line back."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died")
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


# ---- the servers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where each process runs. Pinned (the default, with 2+ CPUs): the upstream, a single worker that
    cannot use more than one core, gets a core of its own, and the load generator shares the other
    with the gateway, so the gateway's cost shows as lost throughput once it and the client need more
    than that core. As in a cluster, where the gateway and app-service have separate CPU budgets.
    Unpinned, the scheduler spreads three busy processes over two cores and the upstream gets about
    two thirds of one, whatever the gateway costs; that measures the scheduler more than the gateway.
    Every process runs at nice -10 when allowed, so unrelated work on the machine disturbs less."""

    upstream: set[int] | None
    others: set[int] | None

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls(None, None)
        return cls({cpus[0]}, {cpus[1]})

    def describe(self) -> str:
        if self.upstream is None or self.others is None:
            return "unpinned"
        return f"upstream on CPU {min(self.upstream)}, gateway and load generator on CPU {min(self.others)}"


def place(pid: int, cpus: set[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, PRIORITY)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (fields 14 and 15, counted after the command name)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@contextmanager
def uvicorn(target: str, port: int, env: dict[str, str], cpus: set[int] | None) -> Iterator[int]:
    argv = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    argv += [
        "--factory",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    place(process.pid, cpus)
    try:
        deadline = time.monotonic() + 60
        while not healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not start")
            time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        process.wait(10)


def backing_services(stack: ExitStack) -> dict[str, str]:
    """Postgres and Redis for the services' lifespans: a migrated database of its own (the gateway keeps
    its signing key there), on KEPLER_DATABASE_URL's server, the local one, or an embedded one."""
    from kepler_devstack import embedded
    from kepler_kit.testing.database import create_test_database, drop_test_database

    server = os.environ.get("KEPLER_DATABASE_URL")
    if server is None and reachable(5432):
        server = "postgresql+asyncpg://postgres@127.0.0.1/postgres"
    if server is None:
        pg = embedded.start_postgres(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "pg")
        stack.callback(pg.stop)
        server = pg.url
    database = create_test_database(server, f"kepler_bench_{os.getpid()}")
    stack.callback(drop_test_database, database)
    urls = {
        "KEPLER_DATABASE_URL": database.url,
        "KEPLER_REDIS_URL": os.environ.get("KEPLER_REDIS_URL", "redis://127.0.0.1:6379/15"),
    }
    if "KEPLER_REDIS_URL" not in os.environ and not reachable(6379):
        redis = embedded.start_redis(Path(stack.enter_context(tempfile.TemporaryDirectory())), persist=False)
        stack.callback(redis.stop)
        urls["KEPLER_REDIS_URL"] = redis.url
    return urls


# ---- the measurement -----------------------------------------------------------------------------------


@dataclass
class Pair:
    """The same measurement, direct then proxied (or the reverse), back to back."""

    direct: dict[str, float]
    proxied: dict[str, float]


@dataclass(frozen=True)
class Servers:
    upstream_port: int
    gateway_port: int
    upstream_pid: int
    gateway_pid: int


def measured(
    load: LoadGenerator, port: int, connections: int, seconds: float, pids: dict[str, int]
) -> dict[str, float]:
    """One run, plus the CPU each named server spent per request (warm-up included on both sides)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = load.run(port, connections, seconds)
    for name, pid in pids.items():
        result[f"{name}_cpu_us"] = (cpu_seconds(pid) - before[name]) * 1e6 / result["total_requests"]
    return result


def pairs(load: LoadGenerator, servers: Servers, connections: int, count: int, seconds: float) -> list[Pair]:
    """Short alternating runs, so a burst of unrelated load hits both sides of a pair alike; the
    order flips every pair so drift favours neither."""
    result = []
    for i in range(count):
        direct = functools.partial(
            measured, load, servers.upstream_port, connections, seconds, {"upstream": servers.upstream_pid}
        )
        proxied = functools.partial(
            measured,
            load,
            servers.gateway_port,
            connections,
            seconds,
            {"upstream": servers.upstream_pid, "gateway": servers.gateway_pid},
        )
        if i % 2:
            second, first = proxied(), direct()
        else:
            first, second = direct(), proxied()
        result.append(Pair(first, second))
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(throughput: list[Pair], latency: list[Pair]) -> None:
    ratios = [p.proxied["rps"] / p.direct["rps"] for p in throughput]
    print("# throughput pairs (proxied/direct): " + " ".join(f"{r:.2f}" for r in ratios))
    added_p50 = median([p.proxied["p50_ms"] - p.direct["p50_ms"] for p in latency])
    added_p99 = median([p.proxied["p99_ms"] - p.direct["p99_ms"] for p in latency])
    print(f"BENCH gateway.throughput_ratio {median(ratios):.2f} x target >= {TARGET_RATIO}")
    print(f"BENCH gateway.added_p50_ms {added_p50:.3f} ms target <= {TARGET_P50_MS}")
    print(f"BENCH gateway.added_p99_ms {added_p99:.3f} ms target <= {TARGET_P99_MS}")
    for name, key, pick in (
        ("direct_rps", "rps", "direct"),
        ("proxied_rps", "rps", "proxied"),
    ):
        print(
            f"BENCH gateway.{name} {median([getattr(p, pick)[key] for p in throughput]):.0f} rps target none"
        )
    for name, key, pick in (("direct_p50_ms", "p50_ms", "direct"), ("direct_p99_ms", "p99_ms", "direct")):
        print(f"BENCH gateway.{name} {median([getattr(p, pick)[key] for p in latency]):.3f} ms target none")
    cpu = {
        "gateway_cpu_us_per_request": median([p.proxied["gateway_cpu_us"] for p in throughput]),
        "upstream_cpu_us_per_request": median([p.direct["upstream_cpu_us"] for p in throughput]),
        "upstream_cpu_us_per_proxied_request": median([p.proxied["upstream_cpu_us"] for p in throughput]),
        "load_generator_cpu_us_per_request": median([p.proxied["client_cpu_us"] for p in throughput]),
    }
    for name, value in cpu.items():
        print(f"BENCH gateway.{name} {value:.0f} us target none")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=8, help="direct/proxied pairs per measurement")
    parser.add_argument("--seconds", type=float, default=0.75, help=f"per run, after {WARMUP_S} s of warm-up")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place the processes")
    args = parser.parse_args()
    placement = Placement.choose(pin=not args.no_pin)
    print(f"# upstream: minimal kit service (create_service_app), GET {PATH}; {placement.describe()}")
    ports = free_port(), free_port()
    with ExitStack() as stack:
        env = os.environ | backing_services(stack) | {"KEPLER_LOG_LEVEL": "WARNING"}
        upstream = stack.enter_context(
            uvicorn("bench.gateway:minimal_upstream", ports[0], env, placement.upstream)
        )
        gateway_env = env | {"KEPLER_GATEWAY_APP_SERVICE_URL": f"http://127.0.0.1:{ports[0]}"}
        gateway = stack.enter_context(
            uvicorn("kepler_gateway.app:create_app", ports[1], gateway_env, placement.others)
        )
        servers = Servers(ports[0], ports[1], upstream, gateway)
        load = LoadGenerator(placement.others)
        stack.callback(load.close)
        throughput = pairs(load, servers, CONNECTIONS, args.pairs, args.seconds)
        latency = pairs(load, servers, 1, args.pairs, args.seconds)
    report(throughput, latency)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        load_main()
    else:
        main()
