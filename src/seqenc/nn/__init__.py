"""seqenc.nn: the Transformer encoder in PyTorch, batch-first, shapes (B, T, D)."""

from .attention import MultiHeadSelfAttention, attention_bias, scaled_dot_product_attention
from .config import EncoderConfig
from .embeddings import Embeddings, sinusoidal_positions
from .encoder import Encoder, EncoderOutput
from .feedforward import FeedForward
from .layer import EncoderLayer

__all__ = [
    "Embeddings",
    "Encoder",
    "EncoderConfig",
    "EncoderLayer",
    "EncoderOutput",
    "FeedForward",
    "MultiHeadSelfAttention",
    "attention_bias",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
]
