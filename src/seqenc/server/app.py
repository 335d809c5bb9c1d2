"""The HTTP layer: routes, limits, errors and metrics around the batching queue.

The app never touches the model's internals: the loader thread builds a ``Tokenization`` (text
-> ids, on the HTTP side) and a ``ModelBackend`` (ids -> vectors, in the queue's worker thread)
and from then on requests flow tokenise -> queue -> respond. Every failure a client can cause
answers ``{"error": ..., "error_type": ...}`` with a 4xx status; 5xx means a server fault.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqenc import __version__

from .metrics import ServerMetrics
from .queue import BatchQueue, QueueClosed, QueueFull
from .schemas import (
    EmbedRequest,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    SimilarityRequest,
    SimpleToken,
    TokenizeRequest,
)
from .settings import Settings
from .tokenization import InputTooLong, InvalidTokenIds, Tokenization

log = logging.getLogger("seqenc.server")

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_ROUTES = frozenset({"/v1/embeddings", "/embed", "/similarity", "/tokenize", "/info", "/metrics"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_STATUS_TYPES = {400: "invalid_json", 401: "unauthorized", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large", 422: "validation",
                 429: "overloaded", 503: "not_ready"}
_UNION_HINTS = {
    ("/v1/embeddings", "input"): "input must be a string, a list of strings, a list of token "
                                 "ids (integers) or a list of lists of token ids",
    ("/embed", "inputs"): "inputs must be a string or a list of strings",
    ("/tokenize", "inputs"): "inputs must be a string or a list of strings",
}
CLIENT_CLOSED = 499  # nginx's status for a client that went away; nobody receives it


class ApiError(Exception):
    """A failure to report to the client as ``{"error", "error_type"}``."""

    def __init__(self, status: int, message: str, error_type: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = (status, message, error_type,
                                                                    headers)


class ClientGone(Exception):
    """The client disconnected before its vectors were ready."""


def error_response(status: int, message: str, error_type: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status, headers=headers)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The body is not JSON (malformed, or not UTF-8)",
        413: "The body is larger than the payload limit",
        422: "Valid JSON, invalid request: wrong types, empty input, too many inputs, an input "
             "too long without truncate, a token id outside the vocabulary, bad dimensions",
        429: "max_concurrent_requests requests are in progress; retry later",
        503: "The model is loading or warming up, or failed to load",
    }
    return {code: {"model": ErrorResponse, "description": descriptions[code]} for code in codes}


# ---- server state: model, tokenizer and queue, made by a loader thread --------------------


class ServerState:
    """What the routes share. ``ready`` turns true after the model loaded and a warm-up
    forward pass ran in the worker thread."""

    def __init__(self, settings: Settings, metrics: ServerMetrics):
        self.settings = settings
        self.metrics = metrics
        self.tokenization: Tokenization | None = None
        self.queue: BatchQueue | None = None
        self.info: dict[str, Any] = {}
        self.phase = "loading the model"
        self.error: str | None = None
        self.ready = False
        self._closing = False
        self._lock = threading.Lock()

    def start(self, model_or_loader: Any,
              on_load_error: Callable[[BaseException], None] | None = None) -> None:
        threading.Thread(target=self._load, args=(model_or_loader, on_load_error),
                         name="seqenc-loader", daemon=True).start()

    def _load(self, model_or_loader: Any,
              on_load_error: Callable[[BaseException], None] | None) -> None:
        s = self.settings
        try:
            from seqenc.allocator import release_free_memory

            from .backend import ModelBackend  # torch: only once a model is wanted

            is_model = hasattr(model_or_loader, "encoder") and hasattr(model_or_loader,
                                                                       "tokenizer")
            model = model_or_loader if is_model else model_or_loader()
            tokenization = Tokenization.from_model(model)
            backend = ModelBackend(model, s.dtype, s.threads)
            queue = BatchQueue(
                backend.embed,
                max_batch_tokens=s.max_batch_tokens,
                batch_size=s.batch_size,
                max_batch_requests=s.max_batch_requests,
                max_concurrent_requests=s.max_concurrent_requests,
                on_batch=self.metrics.batch,
                on_wait=self.metrics.queue_duration.observe,
                on_idle=release_free_memory,  # fragments of varied batch shapes add up
            )
            self.phase = "warming up"
            queue.start(warm_up=lambda: backend.warm_up(tokenization.encode(["warm up"])[0]))
        except Exception as e:
            self.error = f"the model failed to load: {type(e).__name__}: {e}"
            log.error("%s", self.error)
            if on_load_error is not None:
                on_load_error(e)
            return
        if s.max_batch_tokens < model.max_seq_length:
            log.warning("max_batch_tokens=%d < max input length %d: long inputs run alone",
                        s.max_batch_tokens, model.max_seq_length)
        with self._lock:
            if self._closing:
                queue.close()
                return
            self.tokenization, self.queue = tokenization, queue
            self.metrics.watch_queue(lambda: queue.admitted, lambda: queue.pending_texts)
            self.info = self._describe(model, backend.threads)
            self.ready = True
        log.info("model %s ready (dimension %d, max input %d tokens)", s.model_id,
                 model.dimension, model.max_seq_length)

    def _describe(self, model: Any, threads: int) -> dict[str, Any]:
        s = self.settings
        return InfoResponse(
            model_id=s.model_id,
            model_path=str(model.path) if model.path else None,
            model_dtype=s.dtype,
            threads=threads,
            device=str(getattr(model, "device", "cpu")),
            dimension=model.dimension,
            max_input_length=model.max_seq_length,
            pooling=model.pooling,
            normalize=model.normalize,
            max_batch_tokens=s.max_batch_tokens,
            batch_size=s.batch_size,
            max_batch_requests=s.max_batch_requests,
            max_client_batch_size=s.max_client_batch_size,
            max_concurrent_requests=s.max_concurrent_requests,
            payload_limit=s.payload_limit,
            version=__version__,
        ).model_dump()

    def close(self) -> None:
        """Run what is queued, then stop the worker (the lifespan's end)."""
        with self._lock:
            self._closing = True
            self.ready = False
            queue = self.queue
        if queue is not None:
            queue.close(self.settings.graceful_timeout)

    def require_ready(self) -> tuple[Tokenization, BatchQueue]:
        if not self.ready or self.tokenization is None or self.queue is None:
            raise ApiError(503, self.error or f"not ready: {self.phase}", "not_ready")
        return self.tokenization, self.queue


# ---- ASGI middleware (pure ASGI: nothing buffers responses or hides disconnects) -----------


class MetricsMiddleware:
    """Counts every response by route and status, errors from the other middleware included."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _ROUTES or path in PUBLIC_PATHS else "other"
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
        declared = _header(scope, b"content-length")
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
            scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
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
            kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if not (kind == "application/json" or kind.endswith("+json")):
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


async def _client_gone(receive: Receive) -> None:
    """Returns when the client disconnects (the body has been read by then)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# ---- error handlers --------------------------------------------------------------------------


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(400, f"request body is not valid JSON: {reason}", "invalid_json")
    empty = next((e for e in errors if e.get("type") == "too_short"), None)
    if empty is not None:  # an empty list, where at least one item is needed
        field = ".".join(str(part) for part in empty["loc"][1:] if not _is_union_tag(part))
        return error_response(422, f"{field} is empty: send at least one input", "empty")
    messages: list[str] = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        if not loc:
            message = ("request body is required: a JSON object" if e.get("type") == "missing"
                       else "request body must be a JSON object")
        else:
            message = (None if e.get("type") == "missing"
                       else _UNION_HINTS.get((request.url.path, loc[0])))
            if message is None:
                message = f"{'.'.join(loc)}: {e.get('msg', 'invalid')}"
        if message not in messages:
            messages.append(message)
    more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return error_response(422, "; ".join(messages[:3]) + more, "validation")


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member an error came from in its location: "list[str]"
    return isinstance(part, str) and ("[" in part or part in ("str", "int"))


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error_type = _STATUS_TYPES.get(exc.status_code, "validation")
    message = str(exc.detail)
    if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, say)
        message = f"request body could not be read as JSON: {exc.detail}"
    return error_response(exc.status_code, message, error_type, dict(exc.headers or {}))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}", "backend")


# ---- the app ----------------------------------------------------------------------------------


def create_app(
    model_or_loader: Any,
    settings: Settings | None = None,
    *,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The embedding server. ``model_or_loader``: a SentenceEncoder, or a function returning
    one; either way it is loaded and warmed up in a background thread (``/health`` is 503
    until then). ``on_load_error`` is called, in that thread, if loading fails."""
    settings = settings or Settings()
    metrics = ServerMetrics()
    state = ServerState(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start(model_or_loader, on_load_error)
        try:
            yield
        finally:
            # uvicorn has finished every request by now; this runs anything left queued.
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="seqenc embedding server",
        version=__version__,
        description="Sentence embeddings over HTTP: OpenAI-compatible /v1/embeddings and "
        "text-embeddings-inference-style /embed, /similarity, /tokenize. Errors are "
        '`{"error": ..., "error_type": ...}`.',
        lifespan=lifespan,
    )
    app.state.server = state
    app.add_exception_handler(ApiError, lambda r, e: error_response(e.status, e.message,
                                                                    e.error_type, e.headers))
    app.add_exception_handler(ClientGone, lambda r, e: Response(status_code=CLIENT_CLOSED))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    # Added innermost first: metrics see everything, the payload limit applies before auth
    # so that a refused client's body is read (bounded) and it can read its 401.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(PayloadLimitMiddleware, limit=settings.payload_limit)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def check_count(n: int, what: str = "inputs") -> None:
        if n == 0:
            raise ApiError(422, f"{what} is empty: send at least one input", "empty")
        if n > settings.max_client_batch_size:
            raise ApiError(422, f"{n} inputs in one request, more than max_client_batch_size="
                           f"{settings.max_client_batch_size}; split the request",
                           "too_many_inputs")

    @contextmanager
    def admitted(queue: BatchQueue) -> Iterator[None]:
        try:
            with queue.slot():
                yield
        except QueueFull as e:
            raise ApiError(429, f"overloaded: {e}; retry later", "overloaded") from None
        except QueueClosed as e:
            raise ApiError(503, str(e), "not_ready") from None

    async def tokenize(tokenization: Tokenization, texts: Sequence[str], truncate: bool,
                       direction: str) -> list[list[int]]:
        started = time.perf_counter()
        try:
            ids = await run_in_threadpool(tokenization.encode, texts, truncate, direction)
        except InputTooLong as e:
            raise ApiError(422, str(e), "input_too_long") from None
        metrics.tokenization_duration.observe(time.perf_counter() - started)
        return ids

    async def run_queued(request: Request, queue: BatchQueue, ids: list[list[int]],
                         normalize: bool) -> np.ndarray:
        job = asyncio.ensure_future(queue.embed(ids, normalize))
        gone = asyncio.ensure_future(_client_gone(request.receive))
        try:
            done, _ = await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            gone.cancel()
        if job not in done:
            job.cancel()  # the queue drops this request's texts that have not run
            metrics.cancelled.inc()
            raise ClientGone()
        vectors = job.result()
        metrics.texts.inc(len(ids))
        metrics.tokens.inc(sum(len(x) for x in ids))
        return vectors

    async def embed_texts(request: Request, texts: Sequence[str], *, truncate: bool,
                          direction: str, normalize: bool) -> tuple[np.ndarray, int]:
        tokenization, queue = state.require_ready()
        check_count(len(texts))
        with admitted(queue):
            ids = await tokenize(tokenization, texts, truncate, direction.lower())
            vectors = await run_queued(request, queue, ids, normalize)
        return vectors, sum(len(x) for x in ids)

    # ---- routes -----------------------------------------------------------------------------
    @app.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse,
              responses=_errors(400, 413, 422, 429, 503), tags=["embeddings"])
    async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
        """OpenAI-compatible embeddings (vectors normalised as the model is configured)."""
        tokenization, queue = state.require_ready()
        dimension = state.info["dimension"]
        if body.dimensions is not None and not 1 <= body.dimensions <= dimension:
            raise ApiError(422, f"dimensions must be between 1 and {dimension}, got "
                           f"{body.dimensions}", "validation")
        inputs = body.input
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]  # one text, or one input as token ids
        check_count(len(inputs), "input")
        normalize = state.info["normalize"]
        if isinstance(inputs[0], str):
            vectors, n_tokens = await embed_texts(request, inputs, truncate=False,
                                                  direction="right", normalize=normalize)
        else:
            try:
                ids = tokenization.check_ids(inputs)
            except InputTooLong as e:
                raise ApiError(422, str(e), "input_too_long") from None
            except InvalidTokenIds as e:
                raise ApiError(422, str(e), "validation") from None
            with admitted(queue):
                vectors = await run_queued(request, queue, ids, normalize)
            n_tokens = sum(len(x) for x in ids)
        if body.dimensions is not None:
            vectors = _matryoshka(vectors, body.dimensions)
        if body.encoding_format == "base64":
            embeddings: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                                     for v in vectors]
        else:
            embeddings = vectors.tolist()
        return _json({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e}
                     for i, e in enumerate(embeddings)],
            "model": body.model if body.model is not None else settings.model_id,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        })

    @app.post("/embed", response_model=list[list[float]],
              responses=_errors(400, 413, 422, 429, 503), tags=["embeddings"])
    async def embed(body: EmbedRequest, request: Request) -> Response:
        """Vectors for a text or a list of texts (text-embeddings-inference's /embed)."""
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        vectors, _ = await embed_texts(request, texts, truncate=bool(body.truncate),
                                       direction=body.truncation_direction,
                                       normalize=body.normalize)
        return _json(vectors.tolist())

    @app.post("/similarity", response_model=list[float],
              responses=_errors(400, 413, 422, 429, 503), tags=["embeddings"])
    async def similarity(body: SimilarityRequest, request: Request) -> Response:
        """Cosine similarity of source_sentence to each of sentences. The source counts
        towards max_client_batch_size."""
        if not body.inputs.sentences:
            raise ApiError(422, "inputs.sentences is empty: send at least one sentence",
                           "empty")
        texts = [body.inputs.source_sentence, *body.inputs.sentences]
        vectors, _ = await embed_texts(request, texts, truncate=bool(body.truncate),
                                       direction=body.truncation_direction, normalize=True)
        return _json((vectors[1:] @ vectors[0]).tolist())

    @app.post("/tokenize", response_model=list[list[SimpleToken]],
              responses=_errors(400, 413, 422, 503), tags=["tokenizer"])
    async def tokenize_route(body: TokenizeRequest) -> Response:
        """Every token of each input (untruncated), with character offsets into it."""
        tokenization, _ = state.require_ready()
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        check_count(len(texts))
        lists = await run_in_threadpool(tokenization.tokens, texts, body.add_special_tokens)
        return _json([[t.__dict__ for t in tokens] for tokens in lists])

    @app.get("/health", response_model=HealthResponse, responses=_errors(503), tags=["server"])
    async def health() -> dict[str, str]:
        """200 once the model is loaded and warmed up; 503 before (or if loading failed).
        Never needs the API key."""
        state.require_ready()
        return {"status": "ok"}

    @app.get("/info", response_model=InfoResponse, responses=_errors(503),
             tags=["server"])
    async def info() -> dict[str, Any]:
        """The model and the server's limits."""
        state.require_ready()
        return state.info

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text format"}}, tags=["server"])
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests, queue, batches, durations."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    if settings.api_key:
        _document_auth(app)
    return app


def _document_auth(app: FastAPI) -> None:
    """Declare the bearer key, and its 401, on every operation that needs it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = FastAPI.openapi(app)
            spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer", "description": "the server's --api-key"}
            for path, operations in spec["paths"].items():
                if path in PUBLIC_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation["responses"]["401"] = {
                        "description": "Missing or wrong API key (Authorization: Bearer KEY)",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
        return app.openapi_schema

    app.openapi = openapi


def _matryoshka(vectors: np.ndarray, k: int) -> np.ndarray:
    """The first k dimensions, L2-normalised again."""
    cut = vectors[:, :k]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return (cut / np.maximum(norms, 1e-12)).astype(np.float32)


def _json(content: Any) -> Response:
    # Floats print in their shortest exact form, so float32 values survive the round trip.
    return Response(json.dumps(content, separators=(",", ":")), media_type="application/json")
