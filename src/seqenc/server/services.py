"""Models a server loads beside (or instead of) the embedding model: a reranker (a
CrossEncoder: /rerank, /v1/rerank) and a sparse encoder (a SparseEncoder: /embed_sparse).

Each gets its backend (search_backend.py) and a ``BatchQueue`` of its own, built from the same
Settings as the embedding queue: the same dtype, batch limits, concurrency limit (per model),
warm-up before ``/health`` turns 200, and the same metrics. One worker thread per model: a
window never mixes two models' inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seqenc.choices import check_choice

from .metrics import ServerMetrics
from .queue import BatchQueue
from .settings import Settings

KINDS = ("rerank", "sparse")
# What /info and error messages call each kind, and the `seqenc serve` option that loads it.
NAMES = {"embed": ("embedding model", "--model"), "rerank": ("reranker", "--reranker"),
         "sparse": ("sparse model", "--sparse-model")}
# POST / (TEI's default route) serves whichever of them are loaded
ROUTES = {"embed": ["/v1/embeddings", "/embeddings", "/embed", "/similarity", "/tokenize",
                    "/v2/embed", "/v1/embed", "/"],
          "rerank": ["/rerank", "/v1/rerank", "/v2/rerank", "/"], "sparse": ["/embed_sparse", "/"]}


@dataclass
class Service:
    kind: str  # rerank | sparse
    backend: Any  # RerankBackend | SparseBackend
    queue: BatchQueue
    info: dict[str, Any]


def server_queue(run: Any, settings: Settings, metrics: ServerMetrics) -> BatchQueue:
    """The batching queue of one model's ``run`` (backend.embed, .run), with the server's
    limits and metrics; not started."""
    from seqenc.allocator import release_free_memory

    from .backend import interrupt_passes  # torch: only when a model loads

    return BatchQueue(
        run,
        max_batch_tokens=settings.max_batch_tokens,
        batch_size=settings.batch_size,
        max_batch_requests=settings.max_batch_requests,
        max_concurrent_requests=settings.max_concurrent_requests,
        on_batch=metrics.batch,
        on_wait=metrics.queue_duration.observe,
        interrupt=interrupt_passes,
        on_idle=release_free_memory,  # fragments of varied batch shapes add up
    )


def _model(model_or_loader: Any) -> Any:
    is_model = hasattr(model_or_loader, "tokenizer")
    return model_or_loader if is_model else model_or_loader()


def start_service(kind: str, model_or_loader: Any, settings: Settings,
                  metrics: ServerMetrics) -> Service:
    """Load (if given a loader), build the backend and queue, warm up. Raises what loading
    raised."""
    from .search_backend import RerankBackend, SparseBackend

    check_choice("kind", kind, KINDS)
    model = _model(model_or_loader)
    backend = (RerankBackend if kind == "rerank" else SparseBackend)(model, settings.dtype,
                                                                     settings.threads)
    queue = server_queue(backend.run, settings, metrics)
    queue.start(warm_up=backend.warm_up)
    return Service(kind, backend, queue, {**backend.describe(), "routes": ROUTES[kind]})
