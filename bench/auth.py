"""What authentication and authorisation cost per request, end to end through the gateway.

The same small GET, through the gateway to a kit service, twice in one run, in alternating pairs:
- open: anonymous, to a route without a permission (the gateway still looks for credentials);
- guarded: with an access token, to a route behind `require(app.view)`. The gateway verifies the token,
  checks the user and session live, and forwards a signed identity for the service; the service verifies
  that and reads the caller's role in the namespace live (both cached briefly, evicted on change).

`auth.throughput_loss_pct` = 1 − guarded/open requests per second at 64 connections (target ≤ 10 %).
Process placement, the load generator and the backing services are those of bench/gateway.py.

    uv run python bench/auth.py [--pairs 6] [--seconds 0.75]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `bench.gateway` is a sibling module

from bench.gateway import (  # noqa: E402
    CONNECTIONS,
    LoadGenerator,
    Placement,
    backing_services,
    free_port,
    uvicorn,
)

OPEN = "/api/v1/namespaces/bench/open"
GUARDED = "/api/v1/namespaces/bench/guarded"
TARGET_LOSS_PCT = 10.0


def guarded_upstream() -> Any:
    """uvicorn factory: a kit service with one open and one guarded route in app-service's path space."""
    from fastapi import APIRouter

    from kepler_kit.access import Access, require
    from kepler_kit.permissions import Action
    from kepler_kit.service_app import create_service_app
    from kepler_kit.settings import KeplerSettings

    router = APIRouter()

    @router.get("/api/v1/namespaces/{namespace}/open")  # the same shape as the guarded one: same routing cost
    async def open_route(namespace: str) -> dict[str, str]:
        return {"service": "app-service", "status": "ok"}

    @router.get("/api/v1/namespaces/{namespace}/guarded")
    async def guarded(namespace: str, access: Access = require(Action.app_view)) -> dict[str, str]:
        return {"service": "app-service", "status": "ok"}

    return create_service_app(
        service="app-service", title="bench", settings=KeplerSettings(), routers=[router]
    )


async def seed(database_url: str) -> str:
    """A viewer of namespace `bench` and their access token, signed by the gateway's key ring."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from kepler_db import Namespace, NamespaceStatus, Role
    from kepler_kit.db import create_sessionmaker
    from kepler_kit.testing.identities import TEST_SECRET, make_member, make_minter, make_user

    engine = create_async_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        session.add(Namespace(name="bench", status=NamespaceStatus.active))
        await session.flush()
        user = await make_user(session, "viewer@bench.example")
        await make_member(session, user, "bench", Role.viewer)
    minter = await make_minter(sessionmaker, TEST_SECRET)
    token = minter.access(user, ttl=3600)["authorization"]
    await engine.dispose()
    return token


def main() -> None:
    from kepler_kit.testing.identities import TEST_SECRET

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.2)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    placement = Placement.choose(pin=not args.no_pin)
    print(f"# open GET {OPEN} vs guarded GET {GUARDED}, both through the gateway; {placement.describe()}")
    ports = free_port(), free_port()
    with ExitStack() as stack:
        env = (
            os.environ
            | backing_services(stack)
            | {"KEPLER_LOG_LEVEL": "WARNING", "KEPLER_SECRET_KEY": TEST_SECRET}
        )
        token = asyncio.run(seed(env["KEPLER_DATABASE_URL"]))
        upstream = stack.enter_context(
            uvicorn("bench.auth:guarded_upstream", ports[0], env, placement.upstream)
        )
        gateway_env = env | {"KEPLER_GATEWAY_APP_SERVICE_URL": f"http://127.0.0.1:{ports[0]}"}
        gateway = stack.enter_context(
            uvicorn("kepler_gateway.app:create_app", ports[1], gateway_env, placement.others)
        )
        load = LoadGenerator(placement.others)
        stack.callback(load.close)
        pids = {"upstream": upstream, "gateway": gateway}
        opened, guarded = [], []
        for i in range(args.pairs):
            runs = [
                lambda: measured_with(load, ports[1], args.seconds, pids, OPEN, ""),
                lambda: measured_with(load, ports[1], args.seconds, pids, GUARDED, token),
            ]
            first, second = (runs[0](), runs[1]()) if i % 2 == 0 else tuple(reversed((runs[1](), runs[0]())))
            opened.append(first)
            guarded.append(second)
    report(opened, guarded)


def measured_with(
    load: LoadGenerator, port: int, seconds: float, pids: dict[str, int], path: str, token: str
) -> dict[str, float]:
    from bench.gateway import cpu_seconds

    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = load.run(port, CONNECTIONS, seconds, path, token)
    for name, pid in pids.items():
        result[f"{name}_cpu_us"] = (cpu_seconds(pid) - before[name]) * 1e6 / result["total_requests"]
    return result


def report(opened: list[dict[str, float]], guarded: list[dict[str, float]]) -> None:
    losses = [(1 - g["rps"] / o["rps"]) * 100 for o, g in zip(opened, guarded, strict=True)]
    print("# loss per pair (%): " + " ".join(f"{loss:.1f}" for loss in losses))
    print(f"BENCH auth.throughput_loss_pct {statistics.median(losses):.1f} % target <= {TARGET_LOSS_PCT:.0f}")
    print(f"BENCH auth.open_rps {statistics.median(o['rps'] for o in opened):.0f} rps target none")
    print(f"BENCH auth.guarded_rps {statistics.median(g['rps'] for g in guarded):.0f} rps target none")
    for side in ("gateway", "upstream"):
        added = statistics.median(
            g[f"{side}_cpu_us"] - o[f"{side}_cpu_us"] for o, g in zip(opened, guarded, strict=True)
        )
        print(f"BENCH auth.{side}_added_cpu_us {added:.0f} us target none")


if __name__ == "__main__":
    main()
