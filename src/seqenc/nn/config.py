"""EncoderConfig: every size and switch of the Transformer encoder, in one typed dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

NORMS = ("post", "pre", "res_post")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
POSITION_ENCODINGS = ("learned", "learned_offset", "sinusoidal", "none")


@dataclass
class EncoderConfig:
    """Sizes and switches of an encoder. Defaults are all-MiniLM-L6-v2 (a small BERT)."""

    vocab_size: int = 30522  # rows of the token embedding table
    d_model: int = 384  # width of every hidden vector (BERT: hidden_size)
    n_heads: int = 12  # attention heads; d_model must divide by it
    n_layers: int = 6  # identical encoder layers stacked
    d_ff: int = 1536  # inner width of the position-wise feed-forward network
    dropout: float = 0.1  # on embeddings, sub-layer outputs and inside the FFN
    attention_dropout: float = 0.1  # on attention weights
    activation: str = "gelu"  # relu | gelu (exact erf, as BERT) | gelu_tanh
    layer_norm_eps: float = 1e-12  # BERT uses 1e-12, torch.nn defaults to 1e-5
    norm: str = "post"  # post (paper, BERT) | pre | res_post (normalise sub-layer, then add)
    max_positions: int = 512  # longest sequence the position encoding covers
    position_encoding: str = "learned"  # learned (BERT) | learned_offset (RoBERTa) | sinusoidal
    #                                     | none
    type_vocab_size: int = 2  # token-type (segment) embeddings; 0 = none
    pad_token_id: int = 0  # id of [PAD]; its embedding row is used for padding
    embedding_size: int | None = None  # embedding width when not d_model, projected up (ELECTRA)
    embedding_norm: bool = True  # LayerNorm after summing embeddings (BERT)
    final_norm: bool = False  # LayerNorm after the last layer (usual with pre-norm)
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(d_model) (paper)
    bias: bool = True  # biases in the linear layers

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"EncoderConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"EncoderConfig.d_model ({self.d_model}) must be divisible by "
                f"EncoderConfig.n_heads ({self.n_heads})"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"EncoderConfig.{name} must be in [0, 1), got {value!r}")
        _check_choice("norm", self.norm, NORMS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("position_encoding", self.position_encoding, POSITION_ENCODINGS)
        if isinstance(self.type_vocab_size, bool) or not isinstance(self.type_vocab_size, int) \
                or self.type_vocab_size < 0:
            raise ValueError(
                f"EncoderConfig.type_vocab_size must be a non-negative integer, "
                f"got {self.type_vocab_size!r}"
            )
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ValueError(
                f"EncoderConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}"
            )
        if self.embedding_size is not None and (
                isinstance(self.embedding_size, bool) or not isinstance(self.embedding_size, int)
                or self.embedding_size <= 0):
            raise ValueError(
                f"EncoderConfig.embedding_size must be a positive integer or None, "
                f"got {self.embedding_size!r}"
            )
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"EncoderConfig.pad_token_id ({self.pad_token_id}) must be in [0, vocab_size)"
            )
        if self.position_encoding == "learned_offset" \
                and self.pad_token_id + 1 >= self.max_positions:
            raise ValueError(
                f"EncoderConfig.position_encoding 'learned_offset' numbers positions from "
                f"pad_token_id + 1 = {self.pad_token_id + 1}: max_positions "
                f"({self.max_positions}) leaves no room"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def longest_sequence(self) -> int:
        """Most positions one sequence may have (RoBERTa's offset uses pad_token_id + 1 rows)."""
        if self.position_encoding == "learned_offset":
            return self.max_positions - self.pad_token_id - 1
        return self.max_positions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Build from a dict, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig field(s): {', '.join(unknown)}")
        return cls(**data)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(
            f"EncoderConfig.{name} must be one of {', '.join(choices)}; got {value!r}"
        )
