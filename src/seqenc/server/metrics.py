"""Prometheus metrics, in a registry of the app's own (two apps in one process never clash)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKENS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class ServerMetrics:
    """Everything /metrics reports."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("seqenc_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_duration = Histogram("seqenc_request_duration_seconds",
                                          "Time from request to response start, by route",
                                          ["route"], buckets=_SECONDS, registry=r)
        self.cancelled = Counter("seqenc_requests_cancelled",
                                 "Requests dropped because their client went away", registry=r)
        self.texts = Counter("seqenc_texts", "Inputs embedded", registry=r)
        self.tokens = Counter("seqenc_tokens", "Tokens embedded (special tokens included)",
                              registry=r)
        self.in_progress = Gauge("seqenc_queue_requests",
                                 "Requests admitted and not finished (tokenising, queued or "
                                 "running)", registry=r)
        self.pending_texts = Gauge("seqenc_queue_texts",
                                   "Texts waiting for a forward pass", registry=r)
        self.buffered_bytes = Gauge("seqenc_buffered_request_bytes",
                                    "Request-body bytes held by requests in progress",
                                    registry=r)
        self.batch_size = Histogram("seqenc_batch_size", "Rows per forward pass",
                                    buckets=_ROWS, registry=r)
        self.batch_tokens = Histogram("seqenc_batch_tokens",
                                      "Padded tokens (rows x longest) per forward pass",
                                      buckets=_TOKENS, registry=r)
        self.tokenization_duration = Histogram("seqenc_tokenization_duration_seconds",
                                               "Tokenising one request", buckets=_SECONDS,
                                               registry=r)
        self.queue_duration = Histogram("seqenc_queue_duration_seconds",
                                        "From enqueueing a request to its first forward pass",
                                        buckets=_SECONDS, registry=r)
        self.inference_duration = Histogram("seqenc_inference_duration_seconds",
                                            "One forward pass", buckets=_SECONDS, registry=r)

    def watch_buffered(self, buffered: Callable[[], int]) -> None:
        self.buffered_bytes.set_function(buffered)

    def watch_queue(self, admitted: Callable[[], int], pending: Callable[[], int]) -> None:
        self.in_progress.set_function(admitted)
        self.pending_texts.set_function(pending)

    def batch(self, rows: int, padded_tokens: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.batch_tokens.observe(padded_tokens)
        self.inference_duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
