"""What authentication and authorisation cost per request, end to end through the gateway.

The same small GET, through the gateway to a kit service:
- open: anonymous, to a route without a permission (the gateway still looks for credentials);
- guarded: with an access token, to a route behind `require(app.view)`. The gateway verifies the token,
  checks the user and session live, and forwards a signed identity for the service; the service verifies
  that and reads the caller's role in the namespace live (both cached briefly, evicted on change, and
  loaded once for all requests in flight when they expire).

The two kinds alternate in slices of 0.25 s on the same 64 keep-alive connections, and each slice is
compared with the mean of its two neighbours: on this shared machine throughput drifts by ±15 % over
seconds, far more than the effect measured, and adjacent slices see the same drift. Two rounds, each
kind leading one. Routes are tried in order, so the upstream has an open route before the guarded one
and another after it; each round uses one of them, so routing costs both kinds the same on average.

`auth.throughput_loss_pct` = median over slice triples of 1 − guarded/open requests per second
(target ≤ 10 %). Also printed: the CPU each process spends per request more for a guarded request.
Process placement, the load generator and the backing services are those of bench/gateway.py.

    uv run python bench/auth.py [--slices 81] [--slice-s 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

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
OPEN_AFTER = "/api/v1/namespaces/bench/open-after"  # the same route, after the guarded one
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

    async def open_route(namespace: str) -> dict[str, str]:
        return {"service": "app-service", "status": "ok"}

    async def guarded(namespace: str, access: Access = require(Action.app_view)) -> dict[str, str]:
        return {"service": "app-service", "status": "ok"}

    # the same shape as the guarded one, once before it and once after it
    router.add_api_route("/api/v1/namespaces/{namespace}/open", open_route, name="open_before")
    router.add_api_route("/api/v1/namespaces/{namespace}/guarded", guarded)
    router.add_api_route("/api/v1/namespaces/{namespace}/open-after", open_route, name="open_after")

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
    parser.add_argument("--slices", type=int, default=81, help="alternating slices per round (odd)")
    parser.add_argument("--slice-s", type=float, default=0.25)
    parser.add_argument("--settle-s", type=float, default=0.06)
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
        rounds = [
            Round.measure(
                load,
                ports[1],
                order,
                {"open": (path, ""), "guarded": (GUARDED, token)},
                args,
                [upstream, gateway],
            )
            for order, path in ((("open", "guarded"), OPEN), (("guarded", "open"), OPEN_AFTER))
        ]
    report(rounds)


class Round(NamedTuple):
    """One interleaved run: per slice, which kind it carried, its settled requests/s, how many requests
    completed in it and the CPU seconds the upstream and the gateway spent."""

    kinds: list[str]
    rps: list[float]
    requests: list[int]
    cpu_s: list[list[float]]

    @classmethod
    def measure(
        cls,
        load: LoadGenerator,
        port: int,
        order: tuple[str, str],
        kinds: dict[str, tuple[str, str]],
        args: argparse.Namespace,
        pids: list[int],
    ) -> Round:
        result = load.interleaved(
            port,
            CONNECTIONS,
            (kinds[order[0]][0], kinds[order[1]][0]),
            (kinds[order[0]][1], kinds[order[1]][1]),
            slices=args.slices,
            slice_s=args.slice_s,
            settle_s=args.settle_s,
            pids=pids,
        )
        labels = [order[i % 2] for i in range(args.slices)]
        return cls(labels, result["rps"], result["requests"], result["cpu_s"])

    def losses(self) -> list[float]:
        """Each inner slice against the mean of its two neighbours (the other kind): drift over the
        run is the same on both sides of such a triple."""
        out = []
        for i in range(1, len(self.kinds) - 1):
            around = (self.rps[i - 1] + self.rps[i + 1]) / 2
            guarded, opened = (self.rps[i], around) if self.kinds[i] == "guarded" else (around, self.rps[i])
            out.append((1 - guarded / opened) * 100)
        return out

    def cpu_us(self, kind: str, process: int) -> float:
        slices = [i for i, k in enumerate(self.kinds) if k == kind]
        seconds = sum(self.cpu_s[i][process] for i in slices)
        return seconds * 1e6 / sum(self.requests[i] for i in slices)


def report(rounds: list[Round]) -> None:
    losses = [loss for r in rounds for loss in r.losses()]
    all_rps = {
        kind: [x for r in rounds for k, x in zip(r.kinds, r.rps, strict=True) if k == kind]
        for kind in ("open", "guarded")
    }
    rps = {kind: statistics.median(values) for kind, values in all_rps.items()}
    print(
        f"# {len(losses)} slice triples; loss quartiles (%): "
        + " ".join(f"{q:.1f}" for q in statistics.quantiles(losses, n=4))
    )
    overall = 1 - statistics.fmean(all_rps["guarded"]) / statistics.fmean(all_rps["open"])
    print(f"# loss from the mean rates of all slices: {overall * 100:.1f} %")
    print(f"BENCH auth.throughput_loss_pct {statistics.median(losses):.1f} % target <= {TARGET_LOSS_PCT:.0f}")
    print(f"BENCH auth.open_rps {rps['open']:.0f} rps target none")
    print(f"BENCH auth.guarded_rps {rps['guarded']:.0f} rps target none")
    for index, side in enumerate(("upstream", "gateway")):
        added = statistics.mean(r.cpu_us("guarded", index) - r.cpu_us("open", index) for r in rounds)
        print(f"BENCH auth.{side}_added_cpu_us {added:.0f} us target none")


if __name__ == "__main__":
    main()
