"""Request body limits, enforced before anything buffers a body (the gateway's routes and the proxy alike).

A declared `Content-Length` over the limit is answered 413 at once, without reading a byte of the body;
a chunked body is counted as it streams and answered 413 as soon as it passes the limit, whatever the
application was doing with it (the proxy stops relaying, FastAPI stops reading). WebSockets are not
HTTP bodies and keep uvicorn's message size limit.
"""

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kepler_kit.context import REQUEST_ID_HEADER, current_request_id
from kepler_kit.errors import KeplerError
from kepler_kit.problems import problem_response


class ContentTooLarge(KeplerError):
    status, code, title = 413, "content-too-large", "Content too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body may be at most {limit} bytes here.", limit=limit)


class BodyLimit:
    """`limit` bytes per request body, or the limit of the first `(path prefix, limit)` that matches."""

    def __init__(self, app: ASGIApp, limit: int, by_prefix: Sequence[tuple[str, int]] = ()) -> None:
        self.app, self.limit, self.by_prefix = app, limit, tuple(by_prefix)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.by_prefix if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared, chunked = _framing(scope["headers"])
        if declared is not None and declared > limit:
            await _too_large(scope, receive, send, limit)
        elif chunked:
            await _Counted(self.app, limit)(scope, receive, send)
        else:  # no body, or exactly the declared length (uvicorn never delivers more)
            await self.app(scope, receive, send)


class _Counted:
    """One chunked request body, counted as the application reads it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.received = 0
        self.started = self.refused = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    await self._refuse(scope, receive, send)
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.started = True
            if not self.refused:  # after a 413 the application has nobody left to answer
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except ContentTooLarge:
            if not self.refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers 413 (unless a response already started), then stops the application's read: the
        error it raises is answered by the application's own handlers into `guarded_send`, unheard."""
        if not self.refused and not self.started:
            await _too_large(scope, receive, send, self.limit)
        self.refused = True
        raise ContentTooLarge(self.limit)


def _framing(headers: Sequence[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The declared Content-Length, and whether the body is chunked (uvicorn has validated both)."""
    declared, chunked = None, False
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    rid = current_request_id()
    headers = {"Connection": "close", **({REQUEST_ID_HEADER: rid} if rid else {})}
    await problem_response(ContentTooLarge(limit), scope["path"], headers=headers)(scope, receive, send)
