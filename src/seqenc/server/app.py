"""The embedding server's app: state, middleware, error handlers and routes put together.

The app never touches the model's internals: the loader thread (``state``) builds a
``Tokenization`` (text -> ids, on the HTTP side) and a ``ModelBackend`` (ids -> vectors, in the
queue's worker thread), and from then on requests flow tokenise -> queue -> respond
(``routes.pipeline``). Every failure a client can cause answers ``{"error": ...,
"error_type": ...}`` with a 4xx status (``errors``); 5xx means a server fault.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI

from seqenc import __version__

from .bodies import LONGEST_INPUT, BodyParser
from .errors import OPENAI_PATHS, install_error_handlers
from .metrics import ServerMetrics
from .middleware import (
    PUBLIC_PATHS,
    AuthMiddleware,
    JsonBodyMiddleware,
    MetricsMiddleware,
    OpenAIErrorMiddleware,
    PayloadLimitMiddleware,
)
from .routes import ROUTERS
from .settings import Settings
from .state import ServerState


def create_app(
    model_or_loader: Any,
    settings: Settings | None = None,
    *,
    on_load_error: Callable[[BaseException], None] | None = None,
    reranker: Any = None,
    sparse: Any = None,
) -> FastAPI:
    """The embedding server. ``model_or_loader``: a SentenceEncoder, or a function returning
    one; either way it is loaded and warmed up in a background thread (``/health`` is 503
    until then). ``on_load_error`` is called, in that thread, if loading fails. ``reranker``
    (a CrossEncoder or loader) serves /rerank and /v1/rerank, ``sparse`` (a SparseEncoder or
    loader) /embed_sparse; ``model_or_loader=None`` serves no embeddings (those routes 404)."""
    services = {kind: m for kind, m in (("rerank", reranker), ("sparse", sparse))
                if m is not None}
    if model_or_loader is None and not services:
        raise ValueError("nothing to serve: give an embedding model, a reranker or a sparse "
                         "model")
    settings = settings or Settings()
    metrics = ServerMetrics()
    state = ServerState(settings, metrics)
    # A valid body holds at most this many JSON values: max_client_batch_size inputs of token
    # ids, each as long as the model takes (bodies.py refuses more before the event loop
    # sees them).
    body_parser = BodyParser(lambda: settings.max_client_batch_size * (
        state.info.get("max_input_length") or LONGEST_INPUT) + 1024)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start(model_or_loader, on_load_error, services)
        try:
            yield
        finally:
            # uvicorn has finished every request by now; this runs anything left queued.
            await anyio.to_thread.run_sync(state.close)
            await body_parser.close()

    app = FastAPI(
        title="seqenc embedding server",
        version=__version__,
        description="Sentence embeddings, reranking and sparse vectors over HTTP: "
        "OpenAI-compatible /v1/embeddings, text-embeddings-inference-style /embed, /rerank, "
        "/embed_sparse, /similarity, /tokenize and its default route POST /, Cohere's /v2/embed "
        "and /v1/embed, Cohere/Jina-style /v1/rerank and /v2/rerank. "
        'Errors are `{"error": ..., "error_type": ...}`; on '
        '/v1/embeddings OpenAI\'s `{"error": {"message", "type", "param", "code"}}`.',
        lifespan=lifespan,
        # No 307 from /embed/ to /embed: FastAPI builds that Location from the Host header,
        # which the client controls.
        redirect_slashes=False,
    )
    app.state.server = state
    app.state.body_parser = body_parser
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Added innermost first: metrics see everything, the payload limit applies before auth
    # so that a refused client's body is read (bounded) and it can read its 401.
    app.add_middleware(JsonBodyMiddleware, paths={
        r.path for router in ROUTERS for r in router.routes if "POST" in r.methods})
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(PayloadLimitMiddleware, limit=settings.payload_limit,
                       max_buffered=settings.max_buffered_bytes, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics,
                       paths={r.path for router in ROUTERS for r in router.routes} | PUBLIC_PATHS)
    app.add_middleware(OpenAIErrorMiddleware)
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
                shape = "OpenAIErrorResponse" if path in OPENAI_PATHS else "ErrorResponse"
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation["responses"]["401"] = {
                        "description": "Missing or wrong API key (Authorization: Bearer KEY)",
                        "content": {"application/json": {
                            "schema": {"$ref": f"#/components/schemas/{shape}"}}}}
        return app.openapi_schema

    app.openapi = openapi
