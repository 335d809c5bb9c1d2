"""Reranking and sparse routes: TEI's /rerank and /embed_sparse, Cohere/Jina's /v1/rerank (and
Cohere's /v2/rerank, where its ClientV2 posts).

Same pipeline as the embedding routes (pipeline.py): a concurrency slot or 429, tokenisation
on the HTTP side, the model's batching queue, JSON out. 404 ``model_not_loaded`` when the
server was started without the model a route needs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from seqenc.pairs import PairTooLong

from ..bodies import JsonRoute
from ..errors import ApiError, documented
from ..search_backend import sparse_rows
from ..search_schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    EmbedSparseRequest,
    RerankRequest,
    RerankResult,
    SparseValue,
)
from ..state import ServerState
from ..tokenization import InputTooLong
from .pipeline import State, admitted, check_count, json_response, run_queued

router = APIRouter(tags=["reranking and sparse"], route_class=JsonRoute)
_ERRORS = documented(400, 404, 413, 422, 429, 503)


async def _scores(state: ServerState, request: Request, query: str, texts: Sequence[str],
                  truncate: bool, direction: str) -> tuple[np.ndarray, int]:
    """(N, C) raw logits of (query, text) pairs, and the tokens they took."""
    service = state.require_service("rerank")
    check_count(state, len(texts), "texts")
    with admitted(service.queue):
        started = time.perf_counter()
        try:
            folded, _ = await run_in_threadpool(service.backend.encode, query, texts,
                                                truncate, direction.lower())
        except PairTooLong as e:
            raise ApiError(422, f"the pair (query, texts[{e.index}]) has {e.n_tokens} tokens, "
                           f"more than the maximum of {e.max_length}; shorten it or set "
                           "truncate=true", "input_too_long") from None
        state.metrics.tokenization_duration.observe(time.perf_counter() - started)
        logits = await run_queued(state, request, service.queue, folded, False)
    return logits, sum(len(x) for x in folded)


def _one_label(state: ServerState) -> None:
    n = state.services["rerank"].info["num_labels"]
    if n != 1:
        raise ApiError(422, f"the reranker has {n} labels; ranking needs one score per text",
                       "validation")


@router.post("/rerank", response_model=list[RerankResult], responses=_ERRORS)
async def rerank(body: RerankRequest, request: Request, state: State) -> Response:
    """Score each text against the query with the cross-encoder, best first
    (text-embeddings-inference's /rerank): sigmoid(logit), or the logit with raw_scores."""
    state.require_service("rerank")
    _one_label(state)
    logits, _ = await _scores(state, request, body.query, body.texts, bool(body.truncate),
                              body.truncation_direction)
    scores = logits[:, 0] if body.raw_scores else 1 / (1 + np.exp(-logits[:, 0]))
    order = np.argsort(-scores, kind="stable")
    return json_response([{"index": int(i), "score": float(scores[i]),
                           **({"text": body.texts[i]} if body.return_text else {})}
                          for i in order])


@router.post("/v1/rerank", response_model=CohereRerankResponse, responses=_ERRORS)
@router.post("/v2/rerank", response_model=CohereRerankResponse, responses=_ERRORS)
async def cohere_rerank(body: CohereRerankRequest, request: Request, state: State) -> Response:
    """Cohere/Jina-style reranking (as infinity serves it to LangChain and LlamaIndex):
    results sorted by relevance_score = sigmoid(logit), the best top_n of them. /v2/rerank
    is Cohere's v2 path (ClientV2.rerank); its body is v1's without return_documents."""
    state.require_service("rerank")
    _one_label(state)
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    logits, n_tokens = await _scores(state, request, body.query, texts, body.truncate, "right")
    scores = 1 / (1 + np.exp(-logits[:, 0]))
    order = np.argsort(-scores, kind="stable")[: body.top_n]
    return json_response({
        "id": str(uuid.uuid4()),
        "results": [{"index": int(i), "relevance_score": float(scores[i]),
                     **({"document": {"text": texts[i]}} if body.return_documents else {})}
                    for i in order],
        "model": body.model if body.model is not None else state.settings.model_id,
        "usage": {"total_tokens": n_tokens},
    })


@router.post("/embed_sparse", response_model=list[list[SparseValue]], responses=_ERRORS)
async def embed_sparse(body: EmbedSparseRequest, request: Request, state: State) -> Response:
    """SPLADE vectors (text-embeddings-inference's /embed_sparse): per input, the non-zero
    weights as [{"index": token id, "value": weight}], by token id."""
    service = state.require_service("sparse")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(state, len(texts))
    with admitted(service.queue):
        started = time.perf_counter()
        try:
            ids = await run_in_threadpool(service.backend.tokenization.encode, texts,
                                          bool(body.truncate),
                                          body.truncation_direction.lower())
        except InputTooLong as e:
            raise ApiError(422, str(e), "input_too_long") from None
        state.metrics.tokenization_duration.observe(time.perf_counter() - started)
        weights = await run_queued(state, request, service.queue, ids, False)
    return json_response(sparse_rows(weights))
