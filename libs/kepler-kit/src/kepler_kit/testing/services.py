"""Drive a service in-process: its real lifespan, with the test's transaction and queue swapped in."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from kepler_kit.jobs import Sweep, WorkerContext, create_arq_pool
from kepler_kit.service_app import security_state
from kepler_kit.worker import KeplerWorker


class WithState:
    """What uvicorn does with lifespan state: hand each request a copy of it."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, "state": dict(self.state)}, receive, send)


ExtraResources = Callable[[dict[str, Any]], AbstractAsyncContextManager[dict[str, Any]]]


@asynccontextmanager
async def service_client(
    app: ASGIApp,
    *,
    base_url: str = "http://testserver",
    lifespan_of: ASGIApp | None = None,
    peer: tuple[str, int] = ("127.0.0.1", 123),
    extra: ExtraResources | None = None,
    **overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """`app` in-process with its real lifespan (that of `lifespan_of` when `app` wraps a FastAPI app, as
    the gateway does), `overrides` in its state (a `sessionmaker` brings the security state over it), the
    `extra` resources built on that state, and the access-invalidation listener running; requests come
    from the address `peer`."""
    owner = lifespan_of or app
    if not isinstance(owner, FastAPI):
        raise TypeError("service_client runs a FastAPI app's lifespan: pass one as `app` or `lifespan_of`")
    async with owner.router.lifespan_context(owner) as state:
        state = {**(state or {}), **overrides}
        if "sessionmaker" in overrides:
            state.update(security_state(state["service"], overrides["sessionmaker"]))
        async with contextlib.AsyncExitStack() as stack:
            if extra is not None:
                state.update(await stack.enter_async_context(extra(state)))
            yield await stack.enter_async_context(_client(app, state, base_url, peer))


@asynccontextmanager
async def _client(
    app: ASGIApp, state: dict[str, Any], base_url: str, peer: tuple[str, int]
) -> AsyncIterator[httpx.AsyncClient]:
    listener = asyncio.create_task(state["access_control"].listen(state["arq"]))
    transport = httpx.ASGITransport(app=WithState(app, state), raise_app_exceptions=False, client=peer)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def run_burst_worker(
    functions: Sequence[Callable[..., Any]],
    *,
    redis_url: str,
    queue_name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    sweeps: Sequence[Sweep] = (),
    service: str = "test",
    settings: Any = None,
    clients: dict[str, Any] | None = None,
) -> int:
    """Run every queued job once, one at a time as they share the test's connection; returns jobs completed.

    The worker gets a Redis pool of its own, as a real worker process would.
    """
    ctx: WorkerContext = {
        "service": service,
        "queue_name": queue_name,
        "sessionmaker": sessionmaker,
        "sweeps": sweeps,
        "settings": settings,
        "clients": clients or {},
    }

    pool = await create_arq_pool(redis_url, queue_name)
    worker = KeplerWorker(
        functions=list(functions),
        redis_pool=pool,
        queue_name=queue_name,
        burst=True,
        poll_delay=0,
        max_jobs=1,
        handle_signals=False,
        ctx=dict(ctx),
        keep_result=0,
    )
    try:
        await worker.main()  # burst mode: returns once the queue is empty and its jobs are done
    finally:
        await pool.aclose()  # not worker.close(): it calls redis' deprecated close()
    return int(worker.jobs_complete)
