"""What the gateway costs: the same small GET directly against app-service and through the gateway.

One uvicorn worker for the upstream and one for the gateway (each its own process, uvloop + httptools,
no access log), and a load generator in a third process: a raw HTTP/1.1 keep-alive client on uvloop
protocols, cheap enough per request (~25-35 us of CPU) that it leaves the cores to the servers, as wrk
would. With 2+ CPUs the upstream is pinned to one and the gateway and load generator to another (see
`Placement`; `--no-pin` to let the scheduler decide). Every process runs at nice -10 when allowed.

Direct and proxied requests alternate in slices of 0.25 s: each connection slot holds a keep-alive
connection to the upstream and one to the gateway and sends on the one of the current slice. Each slice is
compared with the mean of its two neighbours: on this shared machine throughput drifts by ±15 % over
seconds, far more than the effect measured, and adjacent slices see the same drift (back-to-back runs of
0.75 s, the method before, gave ratios from 0.91 to 1.45 on one machine). Two rounds per measurement, each
kind leading one; the medians over all slice triples are reported. The CPU each process spends per request
is printed too: unlike throughput it barely moves with whatever else the machine is doing.

- throughput: 64 connections, requests/s proxied ÷ requests/s direct (`gateway.throughput_ratio`)
- latency: 1 connection, p50 and p99 of a slice, proxied minus direct (`gateway.added_p50_ms`,
  `gateway.added_p99_ms`)

The upstream is a minimal kit service (`create_service_app`: the middleware, error handling and lifespan
every Kepler service has) with one public, database-free route in app-service's path space. The real
app-service has no such GET: its `/api/v1/status/app-service` needs a token and runs database and
Redis checks per request, which would measure Postgres and Redis (sharing the same 2 cores) rather
than the gateway.
Postgres and Redis: KEPLER_DATABASE_URL / KEPLER_REDIS_URL, else the local defaults, else embedded ones.

    uv run python bench/gateway.py [--slices 81] [--slice-s 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import operator
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

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


# ---- load generator (runs in its own process: `gateway.py --load`, one JSON line in and out per run) -----


class _Schedule:
    """Interleaved A/B load: the kind of request switches every `slice_s`, and completions are counted per
    slice. A slice's rate and latencies count only what completes after `settle_s`, once the requests of
    the previous kind still in flight have drained."""

    def __init__(
        self, requests: list[bytes], start: float, slice_s: float, slices: int, settle_s: float
    ) -> None:
        self.requests, self.start, self.slice_s, self.settle_s = requests, start, slice_s, settle_s
        self.deadline = start + slice_s * slices
        self.settled: list[list[float]] = [[] for _ in range(slices)]  # latencies after the settle time
        self.total = [0] * slices  # all completions: the servers' CPU per request is split by these

    def kind(self, now: float) -> int:
        index = int((now - self.start) // self.slice_s)
        return index % 2 if index >= 0 else 0

    def completed(self, now: float, latency: float) -> None:
        offset = now - self.start
        index = int(offset // self.slice_s)
        if 0 <= index < len(self.total):
            self.total[index] += 1
            if offset - index * self.slice_s >= self.settle_s:
                self.settled[index].append(latency)


class _Connection(asyncio.Protocol):
    """One keep-alive connection of a slot: a slot is one connection per server, and has one request in
    flight at a time. Once the whole response (Content-Length framed) is in, the slot sends the next on
    its connection of the kind the schedule says, until the deadline."""

    def __init__(self, schedule: _Schedule, slot: list[_Connection], done: asyncio.Future[None]) -> None:
        self.schedule, self.slot, self.done = schedule, slot, done
        self.buffer = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        total = _response_length(self.buffer)
        if total is None:
            return
        now = time.perf_counter()
        self.buffer = self.buffer[total:]
        self.schedule.completed(now, now - self.sent)
        if now < self.schedule.deadline:
            _send_next(self.slot, self.schedule)
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("server closed the connection"))


def _response_length(buffer: bytes) -> int | None:
    """The length of the complete 200 response at the start of `buffer`; None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    match = _CONTENT_LENGTH.search(buffer, 0, end + 2)
    if match is None:
        raise RuntimeError(f"response without Content-Length: {buffer[:200]!r}")
    total = end + 4 + int(match.group(1))
    if len(buffer) < total:
        return None
    if not buffer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {buffer[:200]!r}")
    return total


def _send_next(slot: list[_Connection], schedule: _Schedule) -> None:
    kind = schedule.kind(time.perf_counter())
    slot[kind].send(schedule.requests[kind])


def _same(protocol: _Connection) -> _Connection:
    return protocol


def _request(port: int, path: str, authorization: str) -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n{auth}\r\n".encode()


async def _slot(schedule: _Schedule, ports: list[int], done: asyncio.Future[None]) -> list[_Connection]:
    """A connection to each distinct port: both kinds share one when they go to the same server."""
    loop = asyncio.get_running_loop()
    slot: list[_Connection] = []
    by_port: dict[int, _Connection] = {}
    for port in ports:
        if port not in by_port:
            by_port[port] = _Connection(schedule, slot, done)
            await loop.create_connection(functools.partial(_same, by_port[port]), "127.0.0.1", port)
        slot.append(by_port[port])
    return slot


def _percentile_ms(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * q)] * 1000 if ordered else math.nan


async def _load_interleaved(
    ports: list[int], connections: int, paths: list[str], authorizations: list[str], spec: dict[str, Any]
) -> dict[str, Any]:
    """One run of `spec["slices"]` alternating slices (A, B, A, …) after a warm-up on A, with the CPU
    of `spec["pids"]` sampled at every slice boundary."""
    requests = [
        _request(port, path, auth) for port, path, auth in zip(ports, paths, authorizations, strict=True)
    ]
    slices, slice_s, pids = int(spec["slices"]), float(spec["slice_s"]), list(spec["pids"])
    schedule = _Schedule(
        requests, time.perf_counter() + WARMUP_S + 0.3, slice_s, slices, float(spec["settle_s"])
    )
    done = [asyncio.get_running_loop().create_future() for _ in range(connections)]
    slots = [await _slot(schedule, ports, future) for future in done]
    for slot in slots:
        _send_next(slot, schedule)
    cpu: list[list[float]] = []
    for index in range(slices + 1):
        await asyncio.sleep(max(0.0, schedule.start + index * slice_s - time.perf_counter()))
        cpu.append([cpu_seconds(pid) for pid in pids])
    await asyncio.gather(*done)
    for connection in {id(c): c for slot in slots for c in slot}.values():
        assert connection.transport is not None
        connection.transport.close()
    window = slice_s - schedule.settle_s
    return {
        "rps": [len(settled) / window for settled in schedule.settled],
        "p50_ms": [_percentile_ms(settled, 0.5) for settled in schedule.settled],
        "p99_ms": [_percentile_ms(settled, 0.99) for settled in schedule.settled],
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
        result = uvloop.run(
            _load_interleaved(
                message["ports"],
                int(message["connections"]),
                message["paths"],
                message["authorizations"],
                message,
            )
        )
        print(json.dumps(result), flush=True)


class LoadGenerator:
    """A separate process, started once, so each measurement pays no interpreter start-up."""

    def __init__(self, cpus: set[int] | None) -> None:
        argv = [sys.executable, __file__, "--load"]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        place(self.process.pid, cpus)

    @property
    def pid(self) -> int:
        return self.process.pid

    def interleaved(
        self,
        port: int | tuple[int, int],
        connections: int,
        paths: tuple[str, str],
        authorizations: tuple[str, str],
        *,
        slices: int,
        slice_s: float,
        settle_s: float,
        pids: list[int],
    ) -> dict[str, list[Any]]:
        """A/B slices on the same connections (see `_Schedule`), or on the same slots of a connection to
        each server when A and B go to two ports: per slice, the settled requests/s and their p50 and p99
        in ms, all requests completed, and the CPU seconds each of `pids` spent."""
        message = {
            "ports": [port, port] if isinstance(port, int) else list(port),
            "connections": connections,
            "paths": list(paths),
            "authorizations": list(authorizations),
            "slices": slices,
            "slice_s": slice_s,
            "settle_s": settle_s,
            "pids": pids,
        }
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died")
        result: dict[str, list[Any]] = json.loads(line)
        return result

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


@dataclass(frozen=True)
class Servers:
    upstream_port: int
    gateway_port: int
    upstream_pid: int
    gateway_pid: int


DIRECT, PROXIED = "direct", "proxied"
PROCESSES = ("upstream", "gateway", "load_generator")  # the order of the CPU columns


class Round(NamedTuple):
    """One interleaved run: per slice, which kind it carried and what the load generator measured in it
    (`rps`, `p50_ms`, `p99_ms`, `requests`, and `cpu_s` per process of `PROCESSES`)."""

    kinds: list[str]
    measured: dict[str, list[Any]]

    @classmethod
    def measure(
        cls, load: LoadGenerator, servers: Servers, connections: int, leading: str, args: argparse.Namespace
    ) -> Round:
        order = (leading, PROXIED if leading == DIRECT else DIRECT)
        port = {DIRECT: servers.upstream_port, PROXIED: servers.gateway_port}
        measured = load.interleaved(
            (port[order[0]], port[order[1]]),
            connections,
            (PATH, PATH),
            ("", ""),
            slices=args.slices,
            slice_s=args.slice_s,
            settle_s=args.settle_s,
            pids=[servers.upstream_pid, servers.gateway_pid, load.pid],
        )
        return cls([order[i % 2] for i in range(args.slices)], measured)

    def triples(self, key: str) -> list[tuple[float, float]]:
        """(proxied, direct) for each inner slice against the mean of its two neighbours (the other
        kind): drift over the run is the same on both sides of such a triple."""
        values = self.measured[key]
        out = []
        for i in range(1, len(self.kinds) - 1):
            around = (values[i - 1] + values[i + 1]) / 2
            out.append((values[i], around) if self.kinds[i] == PROXIED else (around, values[i]))
        return out

    def slices(self, kind: str, key: str) -> list[Any]:
        return [x for k, x in zip(self.kinds, self.measured[key], strict=True) if k == kind]

    def cpu_us(self, kind: str, process: str) -> float:
        """CPU per request of `kind` that `process` spent, over all slices of that kind."""
        column = PROCESSES.index(process)
        seconds: float = sum(cpu[column] for cpu in self.slices(kind, "cpu_s"))
        requests: int = sum(self.slices(kind, "requests"))
        return seconds * 1e6 / requests


def differences(rounds: list[Round], key: str, combine: Callable[[float, float], float]) -> list[float]:
    """`combine(proxied, direct)` per slice triple, leaving out triples with a slice in which nothing
    completed after settling (the machine stalled the only connection for longer than a slice)."""
    triples = [triple for r in rounds for triple in r.triples(key)]
    return [combine(proxied, direct) for proxied, direct in triples if observed(proxied, direct)]


def observed(*values: float) -> bool:
    return all(value > 0 for value in values)  # False for NaN too


def report(throughput: list[Round], latency: list[Round]) -> None:
    ratios = differences(throughput, "rps", operator.truediv)
    added_p50 = differences(latency, "p50_ms", operator.sub)
    added_p99 = differences(latency, "p99_ms", operator.sub)
    for name, values in (("ratio", ratios), ("added p50 ms", added_p50), ("added p99 ms", added_p99)):
        quartiles = " ".join(f"{q:.3f}" for q in statistics.quantiles(values, n=4))
        print(f"# {len(values)} slice triples; {name} quartiles: {quartiles}")
    print(f"BENCH gateway.throughput_ratio {statistics.median(ratios):.2f} x target >= {TARGET_RATIO}")
    print(f"BENCH gateway.added_p50_ms {statistics.median(added_p50):.3f} ms target <= {TARGET_P50_MS}")
    print(f"BENCH gateway.added_p99_ms {statistics.median(added_p99):.3f} ms target <= {TARGET_P99_MS}")
    for kind in (DIRECT, PROXIED):
        rps = statistics.median(x for r in throughput for x in r.slices(kind, "rps") if observed(x))
        print(f"BENCH gateway.{kind}_rps {rps:.0f} rps target none")
    for key in ("p50_ms", "p99_ms"):
        value = statistics.median(x for r in latency for x in r.slices(DIRECT, key) if observed(x))
        print(f"BENCH gateway.direct_{key} {value:.3f} ms target none")
    cpu = {
        "gateway_cpu_us_per_request": (PROXIED, "gateway"),
        "upstream_cpu_us_per_request": (DIRECT, "upstream"),
        "upstream_cpu_us_per_proxied_request": (PROXIED, "upstream"),
        "load_generator_cpu_us_per_request": (PROXIED, "load_generator"),
    }
    for name, (kind, process) in cpu.items():
        value = statistics.mean(r.cpu_us(kind, process) for r in throughput)
        print(f"BENCH gateway.{name} {value:.0f} us target none")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=81, help="alternating slices per round (odd)")
    parser.add_argument("--slice-s", type=float, default=0.25)
    parser.add_argument("--settle-s", type=float, default=0.06)
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
        throughput = [Round.measure(load, servers, CONNECTIONS, lead, args) for lead in (DIRECT, PROXIED)]
        latency = [Round.measure(load, servers, 1, lead, args) for lead in (DIRECT, PROXIED)]
    report(throughput, latency)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        load_main()
    else:
        main()
