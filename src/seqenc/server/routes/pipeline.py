"""What every working route does, in order: take a concurrency slot (or 429), tokenise on the
HTTP side, queue the ids for the model's worker thread, and answer JSON. A client that
disconnects while queued frees its slot and its texts that have not run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from ..errors import ApiError, ClientGone
from ..queue import BatchQueue, QueueClosed, QueueFull
from ..state import ServerState, server_state
from ..tokenization import InputTooLong, Tokenization

State = Annotated[ServerState, Depends(server_state)]
RETRY_AFTER = "1"  # seconds, on every 429: requests here take milliseconds to a few seconds


def check_count(state: ServerState, n: int, what: str = "inputs") -> None:
    if n == 0:
        raise ApiError(422, f"{what} is empty: send at least one input", "empty")
    limit = state.settings.max_client_batch_size
    if n > limit:
        raise ApiError(422, f"{n} inputs in one request, more than max_client_batch_size="
                       f"{limit}; split the request", "too_many_inputs")


@contextmanager
def admitted(queue: BatchQueue) -> Iterator[None]:
    """One of max_concurrent_requests slots for the block, or 429 at once."""
    try:
        with queue.slot():
            yield
    except QueueFull as e:
        raise ApiError(429, f"overloaded: {e}; retry later", "overloaded",
                       {"Retry-After": RETRY_AFTER}) from None
    except QueueClosed as e:
        raise ApiError(503, str(e), "not_ready") from None


async def tokenize(state: ServerState, tokenization: Tokenization, texts: Sequence[str],
                   truncate: bool, direction: str, max_length: int | None = None,
                   fix: str = "set truncate=true") -> list[list[int]]:
    started = time.perf_counter()
    try:
        ids = await run_in_threadpool(tokenization.encode, texts, truncate, direction,
                                      max_length)
    except InputTooLong as e:  # fix: what the route's own field for truncation is
        raise ApiError(422, e.message(fix), "input_too_long") from None
    state.metrics.tokenization_duration.observe(time.perf_counter() - started)
    return ids


async def run_queued(state: ServerState, request: Request, queue: BatchQueue,
                     ids: list[list[int]], normalize: bool) -> np.ndarray:
    """The vectors of ``ids`` from the worker; ClientGone if the client leaves first."""
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
        state.metrics.cancelled.inc()
        raise ClientGone()
    vectors = job.result()
    state.metrics.texts.inc(len(ids))
    state.metrics.tokens.inc(sum(len(x) for x in ids))
    return vectors


async def embed_texts(state: ServerState, request: Request, texts: Sequence[str], *,
                      truncate: bool, direction: str, normalize: bool,
                      max_length: int | None = None, fix: str = "set truncate=true"
                      ) -> tuple[np.ndarray, int]:
    """(vectors, tokens used) for texts: count check, slot, tokenise (to at most
    ``max_length`` tokens, the model's maximum by default), queue."""
    tokenization, queue = state.require_ready()
    check_count(state, len(texts))
    with admitted(queue):
        ids = await tokenize(state, tokenization, texts, truncate, direction.lower(),
                             max_length, fix)
        vectors = await run_queued(state, request, queue, ids, normalize)
    return vectors, sum(len(x) for x in ids)


def json_response(content: Any) -> Response:
    # Floats print in their shortest exact form, so float32 values survive the round trip.
    return Response(json.dumps(content, separators=(",", ":")), media_type="application/json")


async def _client_gone(receive: Receive) -> None:
    """Returns when the client disconnects (the body has been read by then)."""
    while (await receive())["type"] != "http.disconnect":
        pass
