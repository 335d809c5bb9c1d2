"""What the routes share: the settings, the metrics, and the model's tokenizer and batching
queue, which a loader thread makes while the server already answers (``/health`` is 503 until
the model is loaded and a warm-up pass has run)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import Request

from seqenc import __version__

from .errors import ApiError
from .metrics import ServerMetrics
from .queue import BatchQueue
from .schemas import InfoResponse
from .services import NAMES, ROUTES, Service, server_queue, start_service
from .settings import Settings
from .tokenization import Tokenization

log = logging.getLogger("seqenc.server")


class ServerState:
    """``ready`` turns true after the model loaded and a warm-up forward pass ran in the
    queue's worker thread; ``require_ready`` is how a route gets the tokenizer and queue."""

    def __init__(self, settings: Settings, metrics: ServerMetrics):
        self.settings = settings
        self.metrics = metrics
        self.tokenization: Tokenization | None = None
        self.queue: BatchQueue | None = None
        self.services: dict[str, Service] = {}  # rerank / sparse models (services.py)
        self.has_embeddings = True  # False: a reranker- or sparse-only server
        self.info: dict[str, Any] = {}
        self.phase = "loading the model"
        self.error: str | None = None
        self.ready = False
        self.load_abandoned = False  # close() gave up on a load still running (see close)
        self._closing = False
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    def start(self, model_or_loader: Any,
              on_load_error: Callable[[BaseException], None] | None = None,
              services: dict[str, Any] | None = None) -> None:
        """Load the embedding model (None: serve none) and each of ``services`` (kind ->
        model or loader: "rerank", "sparse") in a background thread."""
        self.has_embeddings = model_or_loader is not None
        self._loader = threading.Thread(target=self._load, args=(model_or_loader, on_load_error,
                                                                 services or {}),
                                        name="seqenc-loader", daemon=True)
        self._loader.start()

    def _load(self, model_or_loader: Any,
              on_load_error: Callable[[BaseException], None] | None,
              services: dict[str, Any]) -> None:
        try:
            started = {}
            for kind, loader in services.items():
                if self._closing:  # shut down while loading: stop at the next stage
                    break
                self.phase = f"loading the {NAMES[kind][0]}"
                started[kind] = start_service(kind, loader, self.settings, self.metrics)
        except Exception as e:
            self._failed(NAMES[kind][0], e, on_load_error)
            return
        self.services = started
        if model_or_loader is None:
            with self._lock:
                if self._closing:
                    for service in started.values():
                        service.queue.close()
                    return
                first = next(iter(started.values()))
                self.metrics.watch_queue(lambda: first.queue.admitted,
                                         lambda: first.queue.pending_texts)
                self.info = self._describe(None, first.backend.threads)
                self.ready = True
            return
        self._load_embeddings(model_or_loader, on_load_error)

    def _load_embeddings(self, model_or_loader: Any,
                         on_load_error: Callable[[BaseException], None] | None) -> None:
        s = self.settings
        if self._closing:
            return
        self.phase = "loading the model"
        try:
            from .backend import ModelBackend  # torch: only when needed

            is_model = hasattr(model_or_loader, "encoder") and hasattr(model_or_loader,
                                                                       "tokenizer")
            model = model_or_loader if is_model else model_or_loader()
            tokenization = Tokenization.from_model(model)
            backend = ModelBackend(model, s.dtype, s.threads)
            queue = server_queue(backend.embed, s, self.metrics)
            if self._closing:  # no worker started yet: nothing to stop
                return
            self.phase = "warming up"
            queue.start(warm_up=lambda: backend.warm_up(tokenization.encode(["warm up"])[0]))
        except Exception as e:
            self._failed("model", e, on_load_error)
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

    def _failed(self, what: str, error: Exception,
                on_load_error: Callable[[BaseException], None] | None) -> None:
        """A load failed: /health reports it from now on, and ``on_load_error`` hears of it."""
        self.error = f"the {what} failed to load: {type(error).__name__}: {error}"
        log.error("%s", self.error)
        if on_load_error is not None:
            on_load_error(error)

    def _describe(self, model: Any | None, threads: int) -> dict[str, Any]:
        """/info: the embedding model (null fields when there is none), the reranker and
        sparse model (null when not loaded), the routes served, the limits."""
        s = self.settings
        first = next(iter(self.services.values()), None)
        return InfoResponse(
            model_id=s.model_id,
            model_path=None if not s.show_model_path else (
                (str(model.path) if model.path else None) if model is not None
                else (first.info.get("path") if first else None)),
            model_dtype=s.dtype,
            threads=threads,
            device=str(getattr(model, "device", "cpu")),
            dimension=model.dimension if model is not None else None,
            max_input_length=model.max_seq_length if model is not None else None,
            pooling=model.pooling if model is not None else None,
            normalize=model.normalize if model is not None else None,
            embeddings=model is not None,
            reranker=self.services["rerank"].info if "rerank" in self.services else None,
            sparse=self.services["sparse"].info if "sparse" in self.services else None,
            routes=list(dict.fromkeys(r for kind in ("embed", *self.services)
                                      if kind != "embed" or model is not None
                                      for r in ROUTES[kind])),
            max_batch_tokens=s.max_batch_tokens,
            batch_size=s.batch_size,
            max_batch_requests=s.max_batch_requests,
            max_client_batch_size=s.max_client_batch_size,
            max_concurrent_requests=s.max_concurrent_requests,
            payload_limit=s.payload_limit,
            max_tokenize_tokens=(s.max_client_batch_size * model.max_seq_length
                                 if model is not None else None),
            read_timeout=s.read_timeout,
            max_connections=s.max_connections,
            max_buffered_bytes=s.max_buffered_bytes,
            version=__version__,
        ).model_dump()

    def close(self) -> None:
        """Run what is queued (for up to --graceful-timeout), then stop the workers (the
        lifespan's end). Returns only once no queue worker of ours is inside torch: one still
        running when the interpreter exits aborts the process (see ``BatchQueue.close``).

        A load in progress stops at its next stage, waited for up to --graceful-timeout. One
        that takes longer (a huge checkpoint, a hung network filesystem) cannot be stopped
        from here: ``load_abandoned`` is then set, and the caller must end the process
        without finalising the interpreter (``seqenc serve`` exits 0 with os._exit)."""
        with self._lock:
            self._closing = True
            self.ready = False
        timeout = self.settings.graceful_timeout
        if self._loader is not None and self._loader.is_alive():
            log.info("shutdown: waiting up to %gs (--graceful-timeout) for the model load in "
                     "progress to stop", timeout)
            self._loader.join(timeout)
            if self._loader.is_alive():
                self.load_abandoned = True
                log.warning("shutdown: the model load did not stop within --graceful-timeout "
                            "(%gs); exiting without waiting for it", timeout)
        with self._lock:
            queues = [self.queue] + [service.queue for service in self.services.values()]
        for queue in queues:
            if queue is not None:
                queue.close(self.settings.graceful_timeout)

    def require_loaded(self) -> None:
        """503 until every model is loaded and warmed up (what /health answers)."""
        if not self.ready:
            raise ApiError(503, self.error or f"not ready: {self.phase}", "not_ready")

    def require_ready(self) -> tuple[Tokenization, BatchQueue]:
        """The embedding model's tokenizer and queue: 503 while loading, 404 when this server
        was started without one."""
        self.require_loaded()
        if not self.has_embeddings:
            raise _not_loaded("embed")
        if self.tokenization is None or self.queue is None:
            raise ApiError(503, self.error or f"not ready: {self.phase}", "not_ready")
        return self.tokenization, self.queue

    def require_service(self, kind: str) -> Service:
        """The reranker's or sparse model's backend and queue: 503 while loading, 404 when
        this server was started without one."""
        self.require_loaded()
        if kind not in self.services:
            raise _not_loaded(kind)
        return self.services[kind]


def _not_loaded(kind: str) -> ApiError:
    name, option = NAMES[kind]
    return ApiError(404, f"this server has no {name}: start it with `seqenc serve {option} "
                    "PATH` (GET /info lists the routes it serves)", "model_not_loaded")


async def server_state(request: Request) -> ServerState:
    """The dependency routes declare to get the state: ``Depends(server_state)``. Async on
    purpose: FastAPI runs a plain ``def`` dependency in the thread pool, where /health would
    wait behind tokenisation."""
    return request.app.state.server
