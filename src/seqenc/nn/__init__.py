"""seqenc.nn: the Transformer encoder in PyTorch, batch-first, shapes (B, T, D).

What each module computes is the concept (attention, feedforward, positions, layer); how a
batch executes it is the plan (plan.py) the Encoder makes once per batch, and the attention
implementations it chooses from live in one table (attend.ATTENTION).
"""

from .attend import ATTENTION, scaled_dot_product_attention
from .attention import MultiHeadSelfAttention, attention_bias
from .config import EncoderConfig
from .embeddings import Embeddings
from .encoder import Encoder, EncoderOutput
from .feedforward import FeedForward, GatedFeedForward
from .layer import EncoderLayer
from .plan import Plan, make_plan
from .positions import RelativePositionBias, apply_rotary, sinusoidal_positions

__all__ = [
    "ATTENTION",
    "Embeddings",
    "Encoder",
    "EncoderConfig",
    "EncoderLayer",
    "EncoderOutput",
    "FeedForward",
    "GatedFeedForward",
    "MultiHeadSelfAttention",
    "Plan",
    "RelativePositionBias",
    "apply_rotary",
    "attention_bias",
    "make_plan",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
]
