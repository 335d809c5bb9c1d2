"""Embedding routes: OpenAI's /v1/embeddings, TEI's /embed and /similarity."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..bodies import JsonRoute
from ..errors import ApiError, clip, documented
from ..schemas import (
    EmbedRequest,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    SimilarityRequest,
)
from ..state import ServerState
from ..tokenization import InputTooLong, InvalidTokenIds
from .pipeline import State, admitted, check_count, embed_texts, json_response, run_queued

router = APIRouter(tags=["embeddings"], route_class=JsonRoute)


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse,
             responses=documented(400, 413, 415, 422, 429, 503, shape="openai"))
# TEI serves the route at /embeddings too: a client given the server's root as base_url
@router.post("/embeddings", response_model=OpenAIEmbeddingResponse,
             responses=documented(400, 413, 415, 422, 429, 503, shape="openai"))
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request,
                            state: State) -> Response:
    """OpenAI-compatible embeddings (vectors normalised as the model is configured)."""
    tokenization, queue = state.require_ready()
    check_dimensions(state, body.dimensions)
    inputs = body.input
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]  # one text, or one input as token ids
    check_count(state, len(inputs), "input")
    normalize = state.info["normalize"]
    if isinstance(inputs[0], str):
        vectors, n_tokens = await embed_texts(state, request, inputs, truncate=False,
                                              direction="right", normalize=normalize)
    else:
        try:
            ids = tokenization.check_ids(inputs)
        except InputTooLong as e:
            raise ApiError(422, str(e), "input_too_long") from None
        except InvalidTokenIds as e:
            raise ApiError(422, str(e), "validation") from None
        with admitted(queue):
            vectors = await run_queued(state, request, queue, ids, normalize)
        n_tokens = sum(len(x) for x in ids)
    if body.dimensions is not None:
        vectors = matryoshka(vectors, body.dimensions)
    if body.encoding_format == "base64":
        embeddings: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                                 for v in vectors]
    else:
        embeddings = vectors.tolist()
    return json_response({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e}
                 for i, e in enumerate(embeddings)],
        "model": body.model if body.model is not None else state.settings.model_id,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    })


@router.post("/embed", response_model=list[list[float]],
             responses=documented(400, 413, 415, 422, 429, 503))
async def embed(body: EmbedRequest, request: Request, state: State) -> Response:
    """Vectors for a text or a list of texts (text-embeddings-inference's /embed)."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    state.require_ready()
    check_dimensions(state, body.dimensions)
    vectors, _ = await embed_texts(state, request, texts, truncate=bool(body.truncate),
                                   direction=body.truncation_direction,
                                   normalize=body.normalize)
    if body.dimensions is not None:
        vectors = matryoshka(vectors, body.dimensions, body.normalize)
    return json_response(vectors.tolist())


@router.post("/similarity", response_model=list[float],
             responses=documented(400, 413, 415, 422, 429, 503))
async def similarity(body: SimilarityRequest, request: Request, state: State) -> Response:
    """Cosine similarity of source_sentence to each of sentences. The source counts
    towards max_client_batch_size."""
    if not body.inputs.sentences:
        raise ApiError(422, "inputs.sentences is empty: send at least one sentence", "empty")
    texts = [body.inputs.source_sentence, *body.inputs.sentences]
    truncate, direction = body.options()
    vectors, _ = await embed_texts(state, request, texts, truncate=truncate,
                                   direction=direction, normalize=True)
    return json_response((vectors[1:] @ vectors[0]).tolist())


def check_dimensions(state: ServerState, k: int | None, field: str = "dimensions") -> None:
    dimension = state.info["dimension"]
    if k is not None and not 1 <= k <= dimension:
        raise ApiError(422, f"{field} must be between 1 and {dimension}, got {clip(k)}",
                       "validation")


def matryoshka(vectors: np.ndarray, k: int, normalize: bool = True) -> np.ndarray:
    """The first k dimensions, L2-normalised again unless ``normalize`` is false."""
    cut = vectors[:, :k]
    if not normalize:
        return np.ascontiguousarray(cut)
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return (cut / np.maximum(norms, 1e-12)).astype(np.float32)
