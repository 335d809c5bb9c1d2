"""The ASGI middleware around the routes, outermost first: metrics, payload limit, API key,
JSON body. Pure ASGI, so nothing buffers responses or hides a client's disconnect."""

from __future__ import annotations

import hmac
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import ServerMetrics

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class MetricsMiddleware:
    """Counts every response by route and status, errors from the other middleware included.
    Paths that are not routes count as "other" (a label per path would grow without bound)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, paths: Collection[str]):
        self.app, self.metrics, self.paths = app, metrics, frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.paths else "other"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.request_duration.labels(route).observe(
                    time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.requests.labels(route, method, str(status)).inc()


class PayloadLimitMiddleware:
    """413 for bodies over ``limit`` bytes, counted as they stream in (Content-Length may be
    absent or lie). The body is buffered, at most ``limit`` bytes, and replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit
        # Reading (and dropping) the rest of an over-limit body lets the client finish
        # sending and read the 413; a client sending far more than that gets cut off.
        self.drain_limit = max(4 * limit, 8 << 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.drain_limit:
            await self._refuse(send, int(declared))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                size = await self._drain(receive, size, message.get("more_body", False))
                await self._refuse(send, size)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: waits for the client to disconnect

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, size: int, more: bool) -> int:
        while more and size <= self.drain_limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        return size

    async def _refuse(self, send: Send, size: int) -> None:
        response = error_response(
            413, f"request body of {'more than ' if size > self.limit else ''}{size} bytes "
                 f"exceeds the payload limit of {self.limit} bytes", "payload_too_large")
        await response({"type": "http"}, _no_receive, send)


class AuthMiddleware:
    """``Authorization: Bearer KEY`` on every route but the public ones (health, docs)."""

    def __init__(self, app: ASGIApp, api_key: str | None):
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key and scope["path"] not in PUBLIC_PATHS:
            scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                     self.key):
                response = error_response(401, "missing or wrong API key; send the header "
                                          "'Authorization: Bearer KEY'", "unauthorized",
                                          {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class JsonBodyMiddleware:
    """Every POST body here is JSON, whatever Content-Type says: ``curl -d`` sends form
    encoding by default, and refusing it would only make the first try fail."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if not (kind == "application/json" or kind.endswith("+json")):
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (Latin-1, as HTTP defines header bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
