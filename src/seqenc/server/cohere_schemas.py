"""Request and response bodies of Cohere's embed routes (/v2/embed, where ``ClientV2.embed``
posts, and /v1/embed, where ``Client.embed`` does), shaped as the ``cohere`` SDK's own types
(EmbedByTypeResponse, EmbeddingsFloatsEmbedResponse) parse them. Strict types, as in
schemas.py; texts go through shapes.py's checks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from .schemas import Name, Texts
from .shapes import text_list_field

# Cohere's embedding_types. int8 and uint8 are in the type so that asking for them gets a 422
# that says why they are not served (routes/cohere.py), not a bare "unexpected value".
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
# Cohere's input_type values; seqenc models have no prompts, so the text ones change nothing
# (README), and "image" is refused: these are text models.
InputType = Literal["search_document", "search_query", "classification", "clustering", "image"]


class CohereEmbedRequest(BaseModel):
    """Cohere's embed body, v2's fields (v1's are a subset: the SDK sends no max_tokens or
    output_dimension there)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())  # "priority", ...

    texts: Annotated[Texts, text_list_field("texts")] | None = Field(
        None, description="The texts to embed (required: images and inputs are not served)")
    model: Name | None = Field(None, description="Accepted and ignored: the server's model")
    input_type: InputType | None = Field(
        None, description="Accepted and ignored for texts (seqenc models have no prompts or "
        "input types); \"image\" is a 422")
    embedding_types: list[EmbeddingType] | None = Field(
        None, min_length=1, description="float, base64 (little-endian float32 bytes), binary "
        "and ubinary (sign bits packed 8 to a byte, first dimension in the high bit; binary "
        "is ubinary - 128); int8 and uint8 are a 422. Default: float")
    truncate: Literal["NONE", "START", "END"] = Field(
        "END", description="NONE: a 422 for a text over the limit; START drops its start, "
        "END its end, down to the limit")
    max_tokens: StrictInt | None = Field(
        None, ge=1, description="Tokens per text, special tokens included (at most the "
        "model's maximum); longer texts go by truncate")
    output_dimension: StrictInt | None = Field(
        None, ge=1, description="Keep the first k dimensions, then L2-normalise "
        "(Matryoshka); 1..model dim")
    images: list[Any] | None = Field(None, description="Not served: a 422")
    inputs: list[Any] | None = Field(None, description="Not served: a 422; send texts")


class CohereEmbeddings(BaseModel):
    """One list per requested type, each as long as texts."""

    model_config = ConfigDict(populate_by_name=True)

    float_: list[list[float]] | None = Field(None, alias="float")
    binary: list[list[int]] | None = Field(None, description="Packed sign bits, -128..127")
    ubinary: list[list[int]] | None = Field(None, description="Packed sign bits, 0..255")
    base64: list[str] | None = Field(None, description="base64 of little-endian float32 bytes")


class BilledUnits(BaseModel):
    input_tokens: int = Field(description="Tokens fed to the model, special tokens included")


class ApiVersion(BaseModel):
    version: str


class CohereMeta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


class CohereEmbedByTypeResponse(BaseModel):
    response_type: Literal["embeddings_by_type"] = "embeddings_by_type"
    id: str
    embeddings: CohereEmbeddings
    texts: list[str]
    meta: CohereMeta


class CohereEmbedFloatsResponse(BaseModel):
    """/v1/embed without embedding_types (Cohere's v1 answers plain float lists then)."""

    response_type: Literal["embeddings_floats"] = "embeddings_floats"
    id: str
    embeddings: list[list[float]]
    texts: list[str]
    meta: CohereMeta
