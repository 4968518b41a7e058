"""The watch stream: chunked JSON lines of ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events.

Subscribing and replaying history happen in one synchronous step, so the stream has neither gaps nor
duplicates. A filtered watch sees an object leaving its selector as DELETED and entering it as ADDED, as on a
real server.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from kepler_kubefake import errors
from kepler_kubefake.faults import DropWatch, Faults, WatchGone
from kepler_kubefake.kinds import Obj
from kepler_kubefake.resources import Api, Target
from kepler_kubefake.selectors import Matcher
from kepler_kubefake.store import Change, Subscription

log = logging.getLogger("kepler_kubefake.watch")
Writer = Callable[[web.StreamResponse], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WatchParams:
    resource_version: str | None
    timeout: float | None
    bookmarks: bool


@dataclass(frozen=True, slots=True)
class WatchSettings:
    bookmark_interval: float
    gone_as_event: bool
    fresh_wait: float = 3.0  # real seconds a watch from a future version waits for the store to catch up


def _event(type_: str, obj: Obj) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _visible(t: Target, match: Matcher, obj: Obj | None) -> bool:
    if obj is None:
        return False
    return (t.namespace is None or obj["metadata"].get("namespace") == t.namespace) and match(obj)


def translate(change: Change, t: Target, match: Matcher) -> str | None:
    """The event type this watcher sees for a change, or None when the change is outside its selection."""
    now = _visible(t, match, change.obj)
    if change.type == "DELETED":
        return "DELETED" if now else None
    was = change.type == "MODIFIED" and _visible(t, match, change.old)
    if now:
        return "MODIFIED" if was else "ADDED"
    return "DELETED" if was else None


class WatchStream:
    def __init__(
        self, api: Api, t: Target, match: Matcher, params: WatchParams, settings: WatchSettings
    ) -> None:
        self.api, self.t, self.match, self.params, self.settings = api, t, match, params, settings
        self.sent = 0

    def requested(self) -> int | None:
        """The resourceVersion to resume after, or None for "current state first"."""
        rv = self.params.resource_version
        if rv in (None, "", "0"):
            return None
        try:
            return int(rv or "")
        except ValueError:
            raise errors.bad_request(f"invalid resource version: {rv}") from None

    async def wait_until_fresh(self) -> None:
        """A version newer than the store's (a lagging HA apiserver's cache) is waited for, then refused
        with 504 `ResourceVersionTooLarge`, as the watch cache's `waitUntilFreshAndBlock` does after 3 s."""
        wanted = self.requested()
        store = self.api.store
        if wanted is None or wanted <= store.revision:
            return
        caught_up = asyncio.Event()

        def listener(_: Change) -> None:
            if store.revision >= wanted:
                caught_up.set()

        store.listen(listener)
        try:
            await asyncio.wait_for(caught_up.wait(), self.settings.fresh_wait)
        except TimeoutError:
            raise errors.too_large_resource_version(wanted, store.revision) from None
        finally:
            store.unlisten(listener)

    def initial(self) -> list[tuple[str, Obj]]:
        """What precedes live events: current state for no/zero resourceVersion, else history after it."""
        since = self.requested()
        if since is None:
            objects = [o for o in self.api.store.objects(self.t.kind, self.t.namespace) if self.match(o)]
            return [("ADDED", o) for o in objects]
        return [
            (type_, c.obj)
            for c in self.api.store.since(self.t.kind, since)
            if (type_ := translate(c, self.t, self.match))
        ]

    async def send(self, resp: web.StreamResponse, type_: str, obj: Obj) -> None:
        await resp.write(_event(type_, self.api.present(self.t, obj)))
        self.sent += 1

    async def bookmark(self, resp: web.StreamResponse) -> None:
        meta = {"resourceVersion": str(self.api.store.revision)}
        obj = {"kind": self.t.kind.kind, "apiVersion": self.t.api_version, "metadata": meta}
        await resp.write(_event("BOOKMARK", obj))


async def serve_watch(
    request: web.Request,
    api: Api,
    t: Target,
    match: Matcher,
    params: WatchParams,
    settings: WatchSettings,
    faults: Faults,
) -> web.StreamResponse:
    stream = WatchStream(api, t, match, params, settings)
    gone = faults.take(WatchGone, request.method, request.path)
    drop = faults.take(DropWatch, request.method, request.path)
    try:
        await stream.wait_until_fresh()
    except errors.ApiError as exc:
        if _gone_as_event(None, settings):
            return await _error_stream(request, exc)
        raise
    sub = api.store.subscribe(t.kind)
    try:
        try:
            if isinstance(gone, WatchGone):
                raise errors.gone(params.resource_version or "0", api.store.revision)
            initial = stream.initial()
        except errors.ApiError as exc:
            if exc.code == 410 and _gone_as_event(gone, settings):
                return await _error_stream(request, exc)
            raise
        fault = drop if isinstance(drop, DropWatch) else None
        return await _streamed(request, lambda resp: _run(request, resp, stream, sub, initial, fault))
    finally:
        api.store.unsubscribe(sub)


def _gone_as_event(fault: object, settings: WatchSettings) -> bool:
    """An injected WatchGone may choose its form; otherwise the server's `gone_mode` decides."""
    if isinstance(fault, WatchGone) and fault.as_event is not None:
        return fault.as_event
    return settings.gone_as_event


async def _streamed(request: web.Request, write: Writer) -> web.StreamResponse:
    """A chunked 200 stream filled by `write`. A client hanging up mid-stream (a `break` out of a watch, a
    restart) is how watches normally end on a real server, so it ends the stream quietly."""
    resp = web.StreamResponse(
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
    )
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        await write(resp)
    except ConnectionResetError:
        log.debug("watch client went away: %s %s", request.method, request.path_qs)
    return resp


async def _error_stream(request: web.Request, exc: errors.ApiError) -> web.StreamResponse:
    """A 200 stream whose only event is an ERROR carrying the Status (410 Expired, 504 Timeout): the
    cacher's `newErrWatcher`, which is how a watch fails once the request has been accepted."""

    async def write(resp: web.StreamResponse) -> None:
        await resp.write(_event("ERROR", exc.status()))
        await resp.write_eof()

    return await _streamed(request, write)


async def _run(
    request: web.Request,
    resp: web.StreamResponse,
    stream: WatchStream,
    sub: Subscription,
    initial: list[tuple[str, Obj]],
    drop: DropWatch | None,
) -> None:
    for type_, obj in initial:
        if _should_drop(request, stream, drop):
            return
        await stream.send(resp, type_, obj)
    deadline = time.monotonic() + stream.params.timeout if stream.params.timeout else None
    while not _should_drop(request, stream, drop):
        change = await _next(sub, stream, deadline)
        if change is _TIMEOUT:
            break
        if change is _BOOKMARK:
            await stream.bookmark(resp)
        elif isinstance(change, Change):
            if seen_as := translate(change, stream.t, stream.match):
                await stream.send(resp, seen_as, change.obj)
        else:
            break
    if request.transport is not None and not request.transport.is_closing():
        await resp.write_eof()


_TIMEOUT = object()
_BOOKMARK = object()


async def _next(sub: Subscription, stream: WatchStream, deadline: float | None) -> object:
    """The next change, a bookmark tick, the timeout, or None when the server shuts down."""
    waits = [stream.settings.bookmark_interval] if stream.params.bookmarks else []
    if deadline is not None:
        waits.append(deadline - time.monotonic())
    wait = min(waits) if waits else None
    if wait is not None and wait <= 0:
        return _TIMEOUT
    try:
        return await asyncio.wait_for(sub.queue.get(), wait)
    except TimeoutError:
        if deadline is not None and time.monotonic() >= deadline:
            return _TIMEOUT
        return _BOOKMARK


def _should_drop(request: web.Request, stream: WatchStream, drop: DropWatch | None) -> bool:
    """Apply an injected DropWatch: abort the TCP connection mid-stream, or end it cleanly."""
    if drop is None or stream.sent < drop.after_events:
        return False
    if drop.abrupt and request.transport is not None:
        request.transport.abort()
    return True
