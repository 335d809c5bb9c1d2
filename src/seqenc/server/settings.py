"""Server settings: one frozen dataclass shared by the CLI, the app and the batching queue."""

from __future__ import annotations

from dataclasses import dataclass

from seqenc.choices import DTYPES, check_choice


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
    show_model_path: bool = False  # /info shows the model's directory (a name only, if not)
    # Connection limits (see connections.py): a request head must arrive within read_timeout
    # seconds, and its body must not pause longer nor fall below MIN_BODY_RATE.
    read_timeout: float = 10.0
    max_connections: int = 1024  # open at once; beyond it a new one gets 503 and is closed
    max_buffered_bytes: int = 64 << 20  # request bodies held at once, all connections; 429

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "batch_size", "max_client_batch_size",
                     "max_concurrent_requests", "payload_limit", "max_connections",
                     "max_buffered_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError(f"max_batch_requests must be positive, got {self.max_batch_requests}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be positive, got {self.threads}")
        check_choice("dtype", self.dtype, DTYPES)
        if self.api_key is not None:
            check_api_key(self.api_key)
        if self.max_buffered_bytes < self.payload_limit:
            raise ValueError(f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least "
                             f"payload_limit ({self.payload_limit})")
        if not self.read_timeout > 0:
            raise ValueError(f"read_timeout must be positive, got {self.read_timeout}")


def check_api_key(key: str) -> str:
    """The one rule for API keys: visible ASCII characters (``!`` to ``~``), as bearer tokens
    are (RFC 6750). HTTP clients send header values as bytes with no agreed encoding, so a key
    outside ASCII would work only for clients that happen to encode it as the server decodes
    it; refusing it at start-up is clearer than a 401 later."""
    if not key:
        raise ValueError("api_key must not be empty (leave it unset for no authentication)")
    bad = next((c for c in key if not "!" <= c <= "~"), None)
    if bad is not None:
        raise ValueError(f"api_key may hold only visible ASCII characters (! to ~); it holds "
                         f"{bad!r} (U+{ord(bad):04X})")
    return key
