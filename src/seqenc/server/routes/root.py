"""POST /: text-embeddings-inference's default route, where Hugging Face's InferenceClient
posts when it is given the server's URL as its model (``feature_extraction``,
``sentence_similarity``). TEI answers it with its one model's route; seqenc may serve three
models, so the body says which: ``{"query", "texts"}`` is /rerank, ``{"inputs": {"source_sentence",
...}}`` is /similarity, ``{"inputs": text(s)}`` is /embed (/embed_sparse on a server with only a
sparse model)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Discriminator, Tag

from ..bodies import JsonRoute
from ..errors import ApiError, documented
from ..schemas import EmbedRequest, SimilarityRequest
from ..search_schemas import EmbedSparseRequest, RerankRequest, RerankResult, SparseValue
from . import embeddings, search
from .pipeline import State

router = APIRouter(tags=["text-embeddings-inference default route"], route_class=JsonRoute)


def _kind(body: Any) -> str:
    if isinstance(body, dict):
        if "query" in body or "texts" in body:
            return "RerankRequest"
        if isinstance(body.get("inputs"), dict):
            return "SimilarityRequest"
    return "EmbedRequest"


# Tags are the class names: the error handler leaves them out of field paths
RootRequest = Annotated[
    Annotated[EmbedRequest, Tag("EmbedRequest")]
    | Annotated[SimilarityRequest, Tag("SimilarityRequest")]
    | Annotated[RerankRequest, Tag("RerankRequest")],
    Discriminator(_kind)]


@router.post("/", response_model=list[list[float]] | list[float] | list[RerankResult]
             | list[list[SparseValue]], responses=documented(400, 404, 413, 415, 422, 429, 503))
async def root(body: RootRequest, request: Request, state: State) -> Response:
    """The route the body's shape names: /embed, /similarity or /rerank (see their bodies);
    /embed_sparse for an /embed body on a server with only a sparse model."""
    if isinstance(body, RerankRequest):
        return await search.rerank(body, request, state)
    if isinstance(body, SimilarityRequest):
        return await embeddings.similarity(body, request, state)
    if not state.has_embeddings and "sparse" in state.services:
        if body.dimensions is not None:
            raise ApiError(422, "dimensions applies to dense vectors; this server has only "
                           "a sparse model", "validation")
        sparse = EmbedSparseRequest(inputs=body.inputs, truncate=body.truncate,
                                    truncation_direction=body.truncation_direction)
        return await search.embed_sparse(sparse, request, state)
    return await embeddings.embed(body, request, state)
