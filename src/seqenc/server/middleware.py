"""The ASGI middleware around the routes, outermost first: OpenAI's error shape on its routes,
metrics (and requests cut short at shutdown), request bodies (framing, payload limit, bytes
buffered), API key, content type. Pure ASGI, so nothing buffers responses (but error bodies
on OpenAI's routes, a few hundred bytes) or hides a client's disconnect."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import OPENAI_PATHS, clip, error_response, openai_error
from .metrics import ServerMetrics

log = logging.getLogger("seqenc.server")

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class OpenAIErrorMiddleware:
    """Errors on OpenAI's routes in OpenAI's shape, ``{"error": {"message", "type", "param",
    "code"}}``, whichever layer answered them (a route, auth, the payload limit, shutdown).
    The openai SDK builds its exception's text from ``error.message``: seqenc's own shape
    left it at "Error code: 422", the reason hidden in ``e.body``."""

    def __init__(self, app: ASGIApp, paths: Collection[str] = OPENAI_PATHS):
        self.app, self.paths = app, frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is complete
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            try:
                parsed = json.loads(body)
                body = json.dumps(openai_error(parsed)).encode()
            except (ValueError, TypeError, KeyError):
                pass  # not a seqenc error body: sent as it is
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            await send({**start, "headers": [*headers,
                                             (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)


class MetricsMiddleware:
    """Counts every response by route and status, errors from the other middleware included.
    Paths that are not routes count as "other" (a label per path would grow without bound).

    Outermost, it also sees a request cancelled because shutdown outlasted
    --graceful-timeout (uvicorn cancels the task): it answers 503 if nothing was sent yet and
    logs one line, where uvicorn would log the CancelledError's traceback."""

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
        responded = False

        async def send_counted(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                self.metrics.request_duration.labels(route).observe(
                    time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except asyncio.CancelledError:
            log.warning("%s %s cut short: shutdown outlasted --graceful-timeout",
                        scope["method"], route)
            if not responded:
                response = error_response(503, "the server is shutting down", "not_ready",
                                          {"Connection": "close"})
                await response(scope, _no_receive, send_counted)
        finally:
            self.metrics.requests.labels(route, method, str(status)).inc()


class PayloadLimitMiddleware:
    """Request bodies: framing, size, and the bytes held across all requests.

    - Content-Length together with Transfer-Encoding is a 400 and the connection closes
      (RFC 9112 6.1: the pair is how request smuggling starts; h11 would let chunked win).
    - Over ``limit`` bytes, counted as they stream in (Content-Length may be absent or lie):
      413. The body is buffered, at most ``limit`` bytes, and replayed to the app.
    - Bodies held at once by all requests are capped at ``max_buffered``: a body that would
      pass it is read and dropped, and answered 429 with Retry-After. Without the cap, 100
      clients each sending most of a 2 MB body and pausing hold 200 MB.
    """

    def __init__(self, app: ASGIApp, limit: int, max_buffered: int | None = None,
                 metrics: ServerMetrics | None = None):
        self.app, self.limit = app, limit
        self.max_buffered = max_buffered if max_buffered is not None else 32 * limit
        self.buffered = 0  # bytes held by requests in progress; one event loop, no lock
        if metrics is not None:
            metrics.watch_buffered(lambda: self.buffered)
        # Reading (and dropping) the rest of an over-limit body lets the client finish
        # sending and read the 413; a client sending far more than that gets cut off.
        self.drain_limit = max(4 * limit, 8 << 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and header(scope, b"transfer-encoding") is not None:
            response = error_response(400, "Content-Length and Transfer-Encoding in one request: "
                                      "send one of them", "invalid_request",
                                      {"Connection": "close"})
            await response(scope, _no_receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.drain_limit:
            await self._refuse(send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0  # bytes of this body held in chunks
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                more = message.get("more_body", False)
                if size + len(body) > self.limit:
                    await self._refuse(send, await self._drain(receive, size + len(body), more))
                    return
                if self.buffered + len(body) > self.max_buffered:
                    await self._drain(receive, size + len(body), more)
                    await self._busy(send)
                    return
                chunks.append(body)
                size += len(body)
                self.buffered += len(body)
                if not more:
                    break
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"".join(chunks),
                            "more_body": False}
                return await receive()  # after the body: waits for the client to disconnect

            await self.app(scope, replay, send)
        finally:
            self.buffered -= size

    async def _drain(self, receive: Receive, size: int, more: bool) -> int:
        while more and size <= self.drain_limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        return size

    async def _busy(self, send: Send) -> None:
        response = error_response(
            429, f"overloaded: request bodies in progress hold {self.buffered} bytes, near the "
                 f"max_buffered_bytes limit of {self.max_buffered}; retry later", "overloaded",
            {"Retry-After": "1"})
        await response({"type": "http"}, _no_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        response = error_response(
            413, f"request body of {'more than ' if size > self.limit else ''}{size} bytes "
                 f"exceeds the payload limit of {self.limit} bytes", "payload_too_large")
        await response({"type": "http"}, _no_receive, send)


class AuthMiddleware:
    """``Authorization: Bearer KEY`` on every route but the public ones (health, docs). Keys
    are visible ASCII (``settings.check_api_key``); the header's bytes are compared as sent."""

    def __init__(self, app: ASGIApp, api_key: str | None):
        self.app = app
        self.key = api_key.encode("ascii") if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key and scope["path"] not in PUBLIC_PATHS:
            value = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                response = error_response(401, "missing or wrong API key; send the header "
                                          "'Authorization: Bearer KEY'", "unauthorized",
                                          {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class JsonBodyMiddleware:
    """POST bodies must say ``Content-Type: application/json`` (or ``+json``); anything else is
    a 415, as TEI and OpenAI answer. Accepting any type would let a web page post to a server
    without an API key from a visitor's browser (a cross-site ``text/plain`` POST needs no
    preflight); so ``curl`` needs ``-H 'Content-Type: application/json'`` (or ``--json``)."""

    def __init__(self, app: ASGIApp, paths: Collection[str]):
        self.app, self.paths = app, frozenset(paths)  # the POST routes (others: 404 or 405)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] in self.paths):
            kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if not (kind == "application/json" or kind.endswith("+json")):
                response = error_response(
                    415, f"Content-Type must be application/json, got "
                         f"{clip(kind, 60) if kind else 'none'}", "unsupported_media_type")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (Latin-1, as HTTP defines header bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
