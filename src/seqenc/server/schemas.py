"""Request and response bodies. FastAPI turns them into the OpenAPI document, so the field
descriptions here are the API reference. Types are strict: "1" is not an int, 1 is not a
string, true is not a number."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from .shapes import (
    NoPrompt,
    Texts,
    TokenIdLists,
    TokenIds,
    text_field,
    text_list_field,
    text_or_ids_field,
    texts_field,
)

ErrorType = Literal[
    "invalid_json",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_request",
    "validation",
    "empty",
    "too_many_inputs",
    "too_many_tokens",
    "input_too_long",
    "overloaded",
    "not_ready",
    "model_not_loaded",
    "backend",
]

# TEI's spelling, and the lower case Hugging Face's InferenceClient sends (TEI accepts both)
Direction = Literal["Right", "Left", "right", "left"]
TEXTS_HINT = "inputs must be a string or a list of strings"
# Echoed in responses: a name, not a payload
Name = Annotated[StrictStr, Field(max_length=256)]


class _Request(BaseModel):
    # Client libraries add fields of their own (Cohere's "priority", "max_tokens_per_doc"):
    # ignoring unknown fields keeps them working.
    model_config = ConfigDict(extra="ignore")


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong, naming the input index where one is at fault")
    error_type: ErrorType


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="What was wrong, as ErrorResponse.error")
    type: ErrorType = Field(description="As ErrorResponse.error_type")
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """Errors on the OpenAI routes, in OpenAI's shape: the openai SDK shows error.message in
    its exception and error.type as the exception's ``type``."""

    error: OpenAIErrorDetail


class OpenAIEmbeddingRequest(_Request):
    input: Annotated[StrictStr | Texts | TokenIds | TokenIdLists, text_or_ids_field(
        "input must be a string, a list of strings, a list of token ids (integers) or a list "
        "of lists of token ids")] = Field(
        description="A text, a list of texts, one input as token ids, or a list of token-id "
        "lists. Token ids are used as given: include the special tokens, as /tokenize "
        "returns them."
    )
    model: Name | None = Field(None, description="Echoed in the response")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, base64-encoded (as OpenAI)"
    )
    dimensions: StrictInt | None = Field(
        None, ge=1,
        description="Keep the first k dimensions, then L2-normalise (Matryoshka); 1..model dim",
    )
    user: Name | None = Field(None, description="Accepted and ignored")


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of float32 bytes")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens fed to the model, special tokens included")
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class EmbedRequest(_Request):
    inputs: Annotated[StrictStr | Texts, texts_field(TEXTS_HINT)] = Field(
        description="A text or a list of texts, none empty or only whitespace")
    normalize: StrictBool = Field(True, description="L2-normalise each vector")
    truncate: StrictBool | None = Field(
        False, description="Cut inputs longer than the model's maximum instead of refusing them"
    )
    truncation_direction: Direction = Field(
        "Right", description="Right keeps the start of a text, Left keeps its end"
    )
    dimensions: StrictInt | None = Field(
        None, ge=1, description="Keep the first k dimensions (then L2-normalise, with "
        "normalize); 1..model dim")
    prompt_name: NoPrompt = Field(None, description="TEI's; only null: no prompts here")


class SimilarityInputs(BaseModel):
    source_sentence: Annotated[StrictStr, text_field("inputs.source_sentence")]
    sentences: Annotated[Texts, text_list_field("inputs.sentences")]


class SimilarityParameters(BaseModel):
    """TEI's place for the options of /similarity; they win over the top-level fields."""

    model_config = ConfigDict(extra="ignore")

    truncate: StrictBool | None = None
    truncation_direction: Direction | None = None
    prompt_name: NoPrompt = None


class SimilarityRequest(_Request):
    inputs: SimilarityInputs
    truncate: StrictBool | None = False
    truncation_direction: Direction = "Right"
    parameters: SimilarityParameters | None = Field(
        None, description="TEI's form of truncate and truncation_direction")

    def options(self) -> tuple[bool, str]:
        """(truncate, direction), from ``parameters`` where it sets them."""
        p = self.parameters or SimilarityParameters()
        truncate = p.truncate if p.truncate is not None else self.truncate
        return bool(truncate), p.truncation_direction or self.truncation_direction


class TokenizeRequest(_Request):
    inputs: Annotated[StrictStr | Texts, texts_field(TEXTS_HINT, allow_empty=True)] = Field(
        description="A text or a list of texts (empty ones allowed)")
    add_special_tokens: StrictBool = True
    prompt_name: NoPrompt = None


class SimpleToken(BaseModel):
    id: int
    text: str = Field(description="The covered span of the input; the token itself if special")
    special: bool
    start: int | None = Field(description="Character offset into the input; null if special")
    stop: int | None


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class InfoResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    model_path: str | None = Field(description="The model's directory; null unless the "
                                   "server runs with --show-model-path")
    model_dtype: str
    threads: int = Field(description="Torch threads running the forward passes")
    device: str = Field(description="Where the encoder runs: cpu or cuda")
    dimension: int | None = Field(description="Vector size; null without an embedding model")
    max_input_length: int | None
    pooling: str | None
    normalize: bool | None = Field(description="Whether /v1/embeddings vectors are "
                                   "L2-normalised")
    embeddings: bool = Field(True, description="Whether an embedding model is loaded "
                             "(/v1/embeddings, /embed, /similarity, /tokenize)")
    reranker: dict[str, Any] | None = Field(
        None, description="The cross-encoder behind /rerank and /v1/rerank (`seqenc serve "
        "--reranker DIR`); null when none is loaded")
    sparse: dict[str, Any] | None = Field(
        None, description="The SPLADE model behind /embed_sparse (`--sparse-model DIR`); null "
        "when none is loaded")
    routes: list[str] = Field(default_factory=list, description="The model routes served")
    max_batch_tokens: int
    batch_size: int
    max_batch_requests: int | None
    max_client_batch_size: int
    max_concurrent_requests: int
    payload_limit: int
    max_tokenize_tokens: int | None = Field(description="Tokens one /tokenize request may list: "
                                     "max_client_batch_size x max_input_length")
    read_timeout: float
    max_connections: int
    max_buffered_bytes: int
    version: str
