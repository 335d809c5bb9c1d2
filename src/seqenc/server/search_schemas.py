"""Request and response bodies of the reranking and sparse routes (TEI's /rerank and
/embed_sparse, Cohere/Jina's /v1/rerank). Strict types, as in schemas.py; texts go through
shapes.py's checks (one pass, lone surrogates refused with the field named). An empty query,
document or sparse input is scored/encoded as it is (a document may be empty), unlike /embed."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .schemas import Direction, Texts
from .shapes import NoPrompt, documents_field, text_field, text_list_field, texts_field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # client libraries add fields of their own


class RerankRequest(_Request):
    """text-embeddings-inference's /rerank."""

    query: Annotated[StrictStr, text_field("query", allow_empty=True)] = Field(
        description="The query every text is scored against")
    texts: Annotated[Texts, text_list_field("texts", allow_empty=True)] = Field(
        description="The documents to score")
    raw_scores: StrictBool = Field(False, description="Raw logits instead of sigmoid scores")
    return_text: StrictBool = Field(False, description="Echo each text in its result")
    truncate: StrictBool | None = Field(
        False, description="Cut (query, text) pairs longer than the model's maximum, longest "
        "side first, instead of refusing them")
    truncation_direction: Direction = Field(
        "Right", description="Right keeps the start of each side, Left its end")


class RerankResult(BaseModel):
    index: int = Field(description="Position of the text in the request")
    score: float
    text: str | None = Field(None, description="The text, with return_text")


class DocumentText(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: StrictStr


Document = StrictStr | DocumentText


class CohereRerankRequest(_Request):
    """Cohere's and Jina's /v1/rerank (as infinity, LangChain and LlamaIndex clients send it)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    query: Annotated[StrictStr, text_field("query", allow_empty=True)]
    documents: Annotated[list[Document], documents_field("documents", allow_empty=True)] = Field(
        description='Texts, or objects {"text": ...}')
    top_n: StrictInt | None = Field(None, ge=1, description="Keep the best n results")
    return_documents: StrictBool = Field(False, description="Echo each document")
    model: StrictStr | None = Field(None, description="Echoed in the response")
    truncate: StrictBool = Field(
        True, description="Cut pairs longer than the model's maximum (longest side first); "
        "false refuses them with 422")


class CohereDocument(BaseModel):
    text: str


class CohereResult(BaseModel):
    index: int
    relevance_score: float = Field(description="sigmoid(logit) for a one-label reranker")
    document: CohereDocument | None = None


class RerankUsage(BaseModel):
    total_tokens: int = Field(description="Tokens of every (query, document) pair, special "
                              "tokens included")


class CohereRerankResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    results: list[CohereResult]
    model: str
    usage: RerankUsage


class EmbedSparseRequest(_Request):
    """text-embeddings-inference's /embed_sparse."""

    inputs: Annotated[StrictStr | Texts, texts_field("inputs must be a string or a list of "
                                                     "strings", allow_empty=True)] = Field(
        description="A text or a list of texts")
    truncate: StrictBool | None = Field(False, description="Cut inputs longer than the model's "
                                        "maximum instead of refusing them")
    truncation_direction: Direction = "Right"
    prompt_name: NoPrompt = None


class SparseValue(BaseModel):
    index: int = Field(description="Token id in the model's vocabulary")
    value: float = Field(description="SPLADE weight, > 0")
