"""EncoderConfig: every size and switch of the Transformer encoder, in one typed dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# One field per axis of variation; each tuple lists the choices (the first is BERT's).
NORMS = ("post", "pre", "res_post")  # where the LayerNorm sits (layer.py)
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
POSITION_ENCODINGS = ("learned", "learned_offset", "sinusoidal", "none")  # added to embeddings
RELATIVE_POSITIONS = ("none", "rotary", "buckets")  # applied inside attention (positions.py)
FEED_FORWARDS = ("mlp", "glu")  # act(x W1) W2, or gated: (act(x Wg) * x Wu) W2 (feedforward.py)


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
    ffn_in_bias: bool | None = None  # biases of the FFN's input projection; None: as `bias`
    norm_bias: bool = True  # LayerNorms with a shift beta (ModernBERT: False)
    feed_forward: str = "mlp"  # mlp | glu (gated; SwiGLU = glu + silu, GeGLU = glu + gelu)
    relative_positions: str = "none"  # none | rotary (RoPE) | buckets (MPNet's bucketed bias)
    rotary_base: float = 10000.0  # RoPE theta (ModernBERT global 160000, NomicBERT 1000)
    rotary_local_base: float | None = None  # theta of the windowed layers; None: rotary_base
    rotary_interleaved: bool = False  # rotate pairs (x0, x1) (GPT-J) vs halves (NeoX, HF)
    relative_buckets: int = 32  # MPNet: buckets of the relative position bias
    relative_max_distance: int = 128  # MPNet: distances past this share the last bucket
    attention_window: int = 0  # 0: every layer global; else local layers see |i - j| <= w // 2
    global_every: int = 1  # with a window, layer i is global when i % global_every == 0
    first_attention_norm: bool = True  # False: pre-norm layer 0 has no attention LayerNorm

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
        _check_choice("relative_positions", self.relative_positions, RELATIVE_POSITIONS)
        _check_choice("feed_forward", self.feed_forward, FEED_FORWARDS)
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
        self._check_variants()

    def _check_variants(self) -> None:
        for name in ("attention_window", "global_every", "relative_buckets",
                     "relative_max_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"EncoderConfig.{name} must be a non-negative integer, got {value!r}"
                )
        if self.global_every < 1:
            raise ValueError(f"EncoderConfig.global_every must be >= 1, got {self.global_every}")
        for name in ("rotary_base", "rotary_local_base"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value <= 1):
                raise ValueError(f"EncoderConfig.{name} must be a number > 1, got {value!r}")
        if self.relative_positions == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_dim}")
        if self.relative_positions == "buckets" and self.relative_buckets < 4:
            raise ValueError("EncoderConfig.relative_buckets must be >= 4 for bucketed positions")
        if not self.first_attention_norm and self.norm != "pre":
            raise ValueError("EncoderConfig.first_attention_norm=False needs norm='pre'")
        offset = self.position_encoding == "learned_offset"
        if offset and self.pad_token_id + 1 >= self.max_positions:
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

    def is_global(self, layer: int) -> bool:
        """Whether layer ``layer`` attends over the whole sequence (else within the window)."""
        return self.attention_window == 0 or layer % self.global_every == 0

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
