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
            model_path=str(model.path) if model.path and s.show_model_path else None,
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
            max_tokenize_tokens=s.max_client_batch_size * model.max_seq_length,
            read_timeout=s.read_timeout,
            max_connections=s.max_connections,
            max_buffered_bytes=s.max_buffered_bytes,
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


async def server_state(request: Request) -> ServerState:
    """The dependency routes declare to get the state: ``Depends(server_state)``. Async on
    purpose: FastAPI runs a plain ``def`` dependency in the thread pool, where /health would
    wait behind tokenisation."""
    return request.app.state.server
