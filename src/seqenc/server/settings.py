"""Server settings: one frozen dataclass shared by the CLI, the app and the batching queue."""

from __future__ import annotations

from dataclasses import dataclass

from seqenc.choices import DTYPES


@dataclass(frozen=True)
class Settings:
    model_id: str = "default"  # echoed as "model" and reported by /info
    api_key: str | None = None  # when set, every route but /health and the docs needs it
    max_batch_tokens: int = 8192  # padded tokens (rows x longest row) in one forward pass
    batch_size: int = 32  # rows in one forward pass, as SentenceEncoder.encode's batch_size
    max_batch_requests: int | None = None  # requests drawn into one batching window; None: any
    max_client_batch_size: int = 32  # inputs in one request (TEI's default)
    max_concurrent_requests: int = 512  # requests admitted at once; beyond it: 429
    payload_limit: int = 2_000_000  # request body bytes; beyond it: 413 (TEI's default)
    dtype: str = "float32"  # weights and activations of the forward pass
    threads: int | None = None  # torch intra-op threads; None: torch's default (all cores)
    graceful_timeout: float | None = 60.0  # seconds to drain on SIGTERM before cancelling

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "batch_size", "max_client_batch_size",
                     "max_concurrent_requests", "payload_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError(f"max_batch_requests must be positive, got {self.max_batch_requests}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be positive, got {self.threads}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.api_key == "":
            raise ValueError("api_key must not be empty (leave it unset for no authentication)")
