"""Cohere's embed routes: /v2/embed (``ClientV2.embed``) and /v1/embed (``Client.embed``).

The vectors are the embedding model's, normalised as /v1/embeddings' are; each requested
embedding type is a view of them. float and base64 (little-endian float32 bytes, as Cohere
describes it: the float embedding's bytes appended, base64-encoded) carry them exactly.
Cohere documents binary and ubinary as packed bits, 1/8 the float length, -128..127 and
0..255; the layout is the one sentence-transformers' quantize_embeddings (and vLLM's Cohere
route) use: one bit per dimension, 1 where the value is positive, packed eight to a byte with
the first dimension in the high bit (a last byte's spare bits 0); ubinary is that byte, binary
the byte - 128. int8 and uint8 are refused: Cohere's models are trained for
their own per-model int8 ranges, which are not published, so no scale chosen here would give
values that mean what Cohere's do.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..bodies import JsonRoute
from ..cohere_schemas import (
    CohereEmbedByTypeResponse,
    CohereEmbedFloatsResponse,
    CohereEmbedRequest,
)
from ..errors import ApiError, clip, documented
from ..state import ServerState
from .embeddings import check_dimensions, matryoshka
from .pipeline import State, embed_texts, json_response

router = APIRouter(tags=["embeddings"], route_class=JsonRoute)
_ERRORS = documented(400, 413, 415, 422, 429, 503)
# Cohere's START drops the start of a text (keeps its end): tokenizers' "left"
_DIRECTION = {"START": "left", "END": "right", "NONE": "right"}


@router.post("/v2/embed", response_model=CohereEmbedByTypeResponse, responses=_ERRORS)
async def cohere_embed_v2(body: CohereEmbedRequest, request: Request, state: State) -> Response:
    """Cohere's v2 embed: vectors by type (float unless embedding_types says otherwise)."""
    texts, vectors, n_tokens = await _vectors(body, request, state)
    return json_response(_answer("2", texts, n_tokens, "embeddings_by_type",
                                 by_type(vectors, body.embedding_types or ["float"])))


@router.post("/v1/embed", response_model=CohereEmbedByTypeResponse | CohereEmbedFloatsResponse,
             responses=_ERRORS)
async def cohere_embed_v1(body: CohereEmbedRequest, request: Request, state: State) -> Response:
    """Cohere's v1 embed: plain float lists ("embeddings_floats") without embedding_types,
    vectors by type with them."""
    texts, vectors, n_tokens = await _vectors(body, request, state)
    if body.embedding_types is None:
        return json_response(_answer("1", texts, n_tokens, "embeddings_floats",
                                     vectors.tolist()))
    return json_response(_answer("1", texts, n_tokens, "embeddings_by_type",
                                 by_type(vectors, body.embedding_types)))


def by_type(vectors: np.ndarray, types: Sequence[str]) -> dict[str, Any]:
    """{type: one entry per vector} for each requested type (see the module doc)."""
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(types):
        if kind == "float":
            out[kind] = vectors.tolist()
        elif kind == "base64":
            out[kind] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                         for v in vectors]
        else:
            packed = np.packbits(vectors > 0, axis=1)  # (N, ceil(D / 8)) uint8
            out[kind] = (packed if kind == "ubinary" else packed.astype(np.int16) - 128).tolist()
    return out


async def _vectors(body: CohereEmbedRequest, request: Request, state: State
                   ) -> tuple[list[str], np.ndarray, int]:
    """(texts, vectors, tokens used) after the checks that only the route can make."""
    _refuse_unserved(body)
    texts = body.texts
    if texts is None:
        raise ApiError(422, "texts is required: send the texts to embed", "validation")
    tokenization, _ = state.require_ready()
    check_dimensions(state, body.output_dimension, "output_dimension")
    if body.max_tokens is not None and body.max_tokens <= tokenization.n_special:
        raise ApiError(422, f"max_tokens must be more than {tokenization.n_special} (the "
                       f"special tokens every text takes), got {clip(body.max_tokens)}",
                       "validation")
    vectors, n_tokens = await embed_texts(
        state, request, texts, truncate=body.truncate != "NONE",
        direction=_DIRECTION[body.truncate], normalize=_normalize(state),
        max_length=body.max_tokens, fix='set truncate to "END" or "START"')
    if body.output_dimension is not None:
        vectors = matryoshka(vectors, body.output_dimension, _normalize(state))
    return texts, vectors, n_tokens


def _refuse_unserved(body: CohereEmbedRequest) -> None:
    if body.images is not None or body.input_type == "image":
        raise ApiError(422, "images are not served: seqenc's models embed text; send texts "
                       "(input_type search_document, search_query, classification or "
                       "clustering)", "validation")
    if body.inputs is not None:
        raise ApiError(422, "inputs is not served: send the texts as texts", "validation")
    quantised = [t for t in ("int8", "uint8") if t in (body.embedding_types or [])]
    if quantised:
        raise ApiError(422, f"embedding_types {' and '.join(quantised)} is not served: Cohere's "
                       "int8/uint8 scales are fitted to its own models and not published, so "
                       "seqenc cannot give values that mean the same; use float, base64, "
                       "binary or ubinary", "validation")


def _normalize(state: ServerState) -> bool:
    return bool(state.info["normalize"])


def _answer(version: str, texts: list[str], n_tokens: int, response_type: str,
            embeddings: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "response_type": response_type, "embeddings": embeddings,
            "texts": texts, "meta": {"api_version": {"version": version},
                                     "billed_units": {"input_tokens": n_tokens}}}
