"""The private names of third-party libraries Kepler relies on are still there.

fastapi and arq are pinned to the tested minor ranges (libs/kepler-kit/pyproject.toml). When a bump
removes or renames one of these names, this test says which name, which of our modules relies on it and
what for, instead of a worker or the permission fast path breaking somewhere downstream.

Grep for new ones with `\\._[a-z]` on fastapi/starlette/arq/sqlalchemy/redis/aiohttp objects, and add
them here. (SQLAlchemy's `Row._mapping` is not here: its underscore only keeps it apart from column
names, and it is documented public API.)
"""

import importlib
import importlib.metadata
import inspect
from typing import Any, NamedTuple

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker
from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kepler_kit.access import Access, authorize
from kepler_kit.permissions import Action
from kepler_kit.service_app import create_service_app
from kepler_kit.settings import KeplerSettings
from kepler_kit.testing.identities import Minter, make_user
from kepler_kit.testing.services import service_client
from kepler_kit.worker import KeplerWorker


class PrivateName(NamedTuple):
    distribution: str
    owner: str  # "module:attribute.path"
    name: str
    user: str  # our module relying on it
    why: str

    def present(self) -> bool:
        module, _, path = self.owner.partition(":")
        target: Any = importlib.import_module(module)
        for part in filter(None, path.split(".")):
            target = getattr(target, part)
        return hasattr(target, self.name)

    def missing(self) -> str:
        version = ".".join(importlib.metadata.version(self.distribution).split(".")[:2])
        where = self.owner.replace(":", ".").rstrip(".")
        lost = f"{self.distribution} {version} no longer has {where}.{self.name}"
        return f"{lost}, which {self.user} relies on: {self.why}"


CLASS_NAMES = [
    PrivateName(
        "arq",
        "arq.worker:Worker",
        "_poll_iteration",
        "kepler_kit.worker",
        "KeplerWorker overrides it to beat its heartbeat and to sleep until woken instead of polling.",
    ),
]
# Set by arq's `Worker.__init__`: looked for on an instance.
INSTANCE_NAMES = [
    PrivateName(
        "arq",
        "arq.worker:Worker",
        "_pool",
        "kepler_kit.worker",
        "KeplerWorker.close() checks and clears the worker's Redis pool (arq's own close() stops at the "
        "first Redis error).",
    ),
    PrivateName(
        "arq",
        "arq.worker:Worker",
        "_handle_signals",
        "kepler_kit.worker",
        "KeplerWorker.close() reads it to run on_shutdown when signals are not handled.",
    ),
]


@pytest.mark.parametrize("private", CLASS_NAMES, ids=lambda p: f"{p.owner}.{p.name}")
def test_private_class_names_we_rely_on_exist(private: PrivateName) -> None:
    assert private.present(), private.missing()


@pytest.mark.parametrize("private", INSTANCE_NAMES, ids=lambda p: f"{p.owner}.{p.name}")
async def test_private_attributes_we_rely_on_exist(private: PrivateName, arq: ArqRedis) -> None:
    worker = KeplerWorker(functions=[_nothing], redis_pool=arq, burst=True, handle_signals=False)
    assert hasattr(worker, private.name), private.missing()


def test_the_poll_loop_still_calls_the_overridden_iteration() -> None:
    """The override only matters while arq's main loop goes through it."""
    calls_it = "self._poll_iteration()" in inspect.getsource(Worker)
    assert calls_it, CLASS_NAMES[0]._replace(why="its poll loop no longer calls it").missing()


async def _nothing(ctx: dict[str, Any]) -> None:
    return None


FAST_CHECKS: list[str] = []  # the declared check's own calls: the fast path makes it never run


async def counted_check(request: Request) -> Access:
    FAST_CHECKS.append(request.url.path)
    return await authorize(request, Action.status_view)


counted_check.kepler_action = Action.status_view.value  # type: ignore[attr-defined]
fast_router = APIRouter()


@fast_router.get("/api/v1/fast-path")
async def fast_path_endpoint(access: Access = Depends(counted_check)) -> dict[str, str]:
    return {"who": access.principal.name}


async def test_fastapi_still_builds_routes_from_the_lifted_endpoint(
    settings_overrides: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    session: AsyncSession,
    minter: Minter,
) -> None:
    """The fast path uses no private FastAPI name: it swaps the route's public `endpoint` (without the
    permission parameter) and `dependencies` before the router is included, relying on FastAPI to build
    each inclusion from those. Were it to stop, the check would run again as a sub-dependency."""
    user = await make_user(session, "fast@example.com")
    await session.commit()
    app = create_service_app(
        service="kit-fast", title="fast", settings=KeplerSettings(**settings_overrides), routers=[fast_router]
    )
    async with service_client(app, sessionmaker=sessionmaker, arq=arq) as client:
        response = await client.get("/api/v1/fast-path", headers=minter.identity(user, "kit-fast"))
    assert (response.status_code, response.json()) == (200, {"who": "fast@example.com"})
    version = ".".join(importlib.metadata.version("fastapi").split(".")[:2])
    assert FAST_CHECKS == [], (
        f"fastapi {version} no longer builds an included route from its `endpoint` and `dependencies`, "
        "which kepler_kit.access.fast_path relies on: the permission check runs as a sub-dependency again"
    )
