"""``seqenc serve``: run the embedding server until SIGTERM or Ctrl-C, then drain and exit 0
(requests cut off by --graceful-timeout get 503, and a model load still running then is
abandoned; the exit code is 0 all the same).

Only click is imported here at start-up; uvicorn, fastapi and torch are imported by ``serve``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import NoReturn

import click

from seqenc.choices import DEVICES, DTYPES, LOG_LEVELS
from seqenc.exits import (
    EXIT_ERROR,
    EXIT_OK,
    SERVE_EXIT_CODES,
    ModelLoadError,
    exit_codes,
    signals_end_cleanly,
)
from seqenc.extras import require

from .settings import Settings, check_api_key

__all__ = ["ListenError", "ModelLoadError", "bind_socket", "serve", "serve_command"]


class ListenError(OSError):
    """The address could not be bound (in use, say, or not this machine's)."""


def serve(
    settings: Settings | None = None,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    device: str = "cpu",
    log_level: str = "info",
    reranker: str | None = None,
    sparse_model: str | None = None,
) -> None:
    """Serve ``model`` (a directory, or None for $SEQENC_MODEL / the packaged default) over HTTP
    with ``settings`` (limits, API key, dtype...) until SIGTERM or SIGINT; then stop accepting,
    finish the requests in flight and return. Port 0 picks a free port; the line ``seqenc:
    listening on http://HOST:PORT`` on stderr names it. ``device`` is "cpu", "cuda" or "auto"
    (cuda when a GPU is visible). ``reranker`` (a cross-encoder directory) adds /rerank and
    /v1/rerank, ``sparse_model`` (a *ForMaskedLM directory) /embed_sparse; given either
    without ``model``, the server loads no embedding model. Raises ModelLoadError if a model
    cannot be loaded (or the device is missing), ListenError if the address cannot be bound.

    A model load still running --graceful-timeout seconds after the signal cannot be stopped,
    and Python cannot finalise while that thread may be inside torch (the process would abort):
    the process then exits 0 at once (``os._exit``, after flushing its output) instead of
    returning."""
    for module in ("fastapi", "uvicorn", "prometheus_client"):  # before anything slow
        require(module, "seqenc serve")
    from seqenc.resolve import ModelNotFoundError, resolve_device, resolve_model_path

    settings = settings or Settings()
    embeddings = model is not None or (reranker is None and sparse_model is None)
    try:  # fail before binding the port when there is no model at all
        path = resolve_model_path(model) if embeddings else None
        extra = {kind: resolve_model_path(name) for kind, name in
                 (("rerank", reranker), ("sparse", sparse_model)) if name is not None}
        device = resolve_device(device)
    except (ModelNotFoundError, ValueError) as e:
        raise ModelLoadError(str(e)) from None

    import uvicorn

    from .app import create_app
    from .connections import protocol_class

    _configure_logging(log_level)

    def load():
        from seqenc.model import SentenceEncoder

        return SentenceEncoder.from_pretrained(path, device=device)

    server: uvicorn.Server | None = None

    def stop_on_load_error(error: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    def load_reranker():
        from seqenc.crossencoder import CrossEncoder

        return CrossEncoder.from_pretrained(extra["rerank"], device=device)

    def load_sparse():
        from seqenc.sparse import SparseEncoder

        return SparseEncoder.from_pretrained(extra["sparse"], device=device)

    app = create_app(load if embeddings else None, settings, on_load_error=stop_on_load_error,
                     reranker=load_reranker if "rerank" in extra else None,
                     sparse=load_sparse if "sparse" in extra else None)
    graceful_timeout = settings.graceful_timeout
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level in ("debug", "trace"),  # a log line per request costs throughput
        timeout_graceful_shutdown=graceful_timeout,
        lifespan="on",
        http=protocol_class(settings.read_timeout, settings.max_connections),
    )
    server = uvicorn.Server(config)
    try:
        sock = bind_socket(host, port)
    except OSError as e:
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound_port = sock.getsockname()[1]
    # From here a SIGTERM is a clean stop, also before uvicorn has set its own handlers (it
    # reads should_exit once running): a client may signal as soon as it reads the address.
    with signals_end_cleanly(on_signal=lambda: setattr(server, "should_exit", True)):
        print(f"seqenc: listening on http://{host}:{bound_port} (model {settings.model_id})",
              file=sys.stderr, flush=True)
        server.run(sockets=[sock])
    state = app.state.server
    if state.load_abandoned:
        _exit_now(EXIT_OK)
    if state.error:
        raise ModelLoadError(state.error)


def _exit_now(code: int) -> NoReturn:
    """End the process without finalising the interpreter, whose shutdown would kill the
    loader thread wherever it is (inside torch: std::terminate, exit -6). Output first."""
    for handler in logging.getLogger("seqenc").handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def model_id(model: str | None) -> str:
    """The name the server reports for ``model`` (a directory, or None for the default): the
    directory's own name, never the path to it."""
    from seqenc.resolve import DEFAULT_MODEL

    name = model or os.environ.get("SEQENC_MODEL") or DEFAULT_MODEL
    return DEFAULT_MODEL if name == "default" else Path(name).name or name


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one).

    Made with proto=IPPROTO_TCP on purpose: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    only on sockets that say they are TCP, and uvicorn's ``Config.bind_socket`` leaves proto 0.
    With Nagle on, every keep-alive response waits for the client's delayed ACK: ~40 ms
    added to each request after a connection's first (measured: 48 ms -> 0.3 ms p50)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("seqenc")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level == "trace" else level.upper())


def _classify(e: Exception) -> tuple[int, str] | None:
    """Unloadable model -> 4, missing extra -> 5 (seqenc.exits); a port not bound -> 1."""
    return (EXIT_ERROR, str(e)) if isinstance(e, ListenError) else None


@click.command("serve", epilog=SERVE_EXIT_CODES,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model", default=None, metavar="PATH",
              help="Model directory (default: $SEQENC_MODEL, else the packaged "
                   "all-MiniLM-L6-v2).")
@click.option("--reranker", default=None, metavar="PATH",
              help="Cross-encoder directory to serve at /rerank (TEI) and /v1/rerank "
                   "(Cohere/Jina). Without --model, the server loads no embedding model.")
@click.option("--sparse-model", default=None, metavar="PATH",
              help="SPLADE (*ForMaskedLM) directory to serve at /embed_sparse (TEI). Without "
                   "--model, the server loads no embedding model.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the server to the network.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port; 0 picks a free one (printed on stderr).")
@click.option("--api-key", default=None, envvar="SEQENC_API_KEY",
              help="Require 'Authorization: Bearer KEY' on every route but /health and the "
                   "docs. Also read from $SEQENC_API_KEY (which keeps it out of `ps`).")
@click.option("--max-batch-tokens", default=8192, show_default=True,
              type=click.IntRange(min=1),
              help="Padded tokens (rows x longest) in one forward pass; also the real tokens "
                   "drawn from the queue at once.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Rows in one forward pass.")
@click.option("--max-batch-requests", default=None, type=click.IntRange(min=1),
              help="Requests drawn from the queue at once (default: no limit).")
@click.option("--max-client-batch-size", default=32, show_default=True,
              type=click.IntRange(min=1), help="Inputs in one request; more is a 422.")
@click.option("--max-concurrent-requests", default=512, show_default=True,
              type=click.IntRange(min=1), help="Requests in progress at once; more is a 429.")
@click.option("--payload-limit", default=2_000_000, show_default=True,
              type=click.IntRange(min=1), help="Request body bytes; more is a 413.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32",
              show_default=True,
              help="Precision of the forward pass, for every model served (embedding model, "
                   "reranker, sparse model); bfloat16 converts them once at start-up.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Torch threads for the forward pass (default: one per core). On a machine "
                   "shared with other work, fewer is often faster.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True, help="Where the encoder runs; auto = cuda when a GPU is visible.")
@click.option("--graceful-timeout", default=60.0, show_default=True,
              type=click.FloatRange(min=0),
              help="Seconds to finish in-flight requests (or a model load) after SIGTERM; "
                   "requests still running then are answered 503 and their forward pass is "
                   "stopped at its next layer, a load still running is abandoned, and the "
                   "process exits 0.")
@click.option("--read-timeout", default=10.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds a request head may take to arrive, and a body may pause; a body "
                   "must also average 64 KiB/s after that. Slower connections are closed.")
@click.option("--max-connections", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Open connections; a new one beyond it gets 503 and is closed.")
@click.option("--max-buffered-bytes", default=64 << 20, show_default=True,
              type=click.IntRange(min=1),
              help="Request-body bytes held at once by all requests; beyond it a 429.")
@click.option("--served-model-name", default=None, metavar="NAME",
              help="The model name in responses and /info (default: the model directory's "
                   "name).")
@click.option("--show-model-path", is_flag=True,
              help="Show the model's directory in /info (hidden by default).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
@exit_codes(_classify)
def serve_command(model: str | None, reranker: str | None, sparse_model: str | None,
                  host: str, port: int, api_key: str | None,
                  max_batch_tokens: int, batch_size: int, max_batch_requests: int | None,
                  max_client_batch_size: int, max_concurrent_requests: int,
                  payload_limit: int, dtype: str, threads: int | None, device: str,
                  graceful_timeout: float, read_timeout: float, max_connections: int,
                  max_buffered_bytes: int, served_model_name: str | None,
                  show_model_path: bool, log_level: str) -> None:
    """Serve embeddings over HTTP (OpenAI /v1/embeddings; TEI-style /embed, /similarity,
    /tokenize; /health, /info, /metrics; OpenAPI at /docs), and with --reranker and
    --sparse-model reranking (/rerank, /v1/rerank) and SPLADE vectors (/embed_sparse).

    \b
    Which models a server loads:
      seqenc serve                                  embedding model (the default)
      seqenc serve --reranker DIR                   reranker only
      seqenc serve --model default --reranker DIR   both; add --sparse-model DIR for SPLADE
    GET /info says which are loaded and lists the routes served; the others answer 404.
    """
    if api_key is not None:
        try:
            check_api_key(api_key)
        except ValueError as e:
            raise click.BadParameter(str(e).removeprefix("api_key "),
                                     param_hint="--api-key") from None
    if max_buffered_bytes < payload_limit:
        raise click.BadParameter(f"must be at least --payload-limit ({payload_limit})",
                                 param_hint="--max-buffered-bytes")
    settings = Settings(
        model_id=served_model_name or model_id(
            model if model is not None or (reranker is None and sparse_model is None)
            else reranker or sparse_model),
        api_key=api_key,
        max_batch_tokens=max_batch_tokens,
        batch_size=batch_size,
        max_batch_requests=max_batch_requests,
        max_client_batch_size=max_client_batch_size,
        max_concurrent_requests=max_concurrent_requests,
        payload_limit=payload_limit,
        dtype=dtype,
        threads=threads,
        graceful_timeout=graceful_timeout,
        read_timeout=read_timeout,
        max_connections=max_connections,
        max_buffered_bytes=max_buffered_bytes,
        show_model_path=show_model_path,
    )
    serve(settings, model, host, port, device=device, log_level=log_level, reranker=reranker,
          sparse_model=sparse_model)
