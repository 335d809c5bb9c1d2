"""Position-wise feed-forward networks: the same small network applied to every token.

    mlp  down(act(up(x)))                      BERT, MPNet (GELU); the paper (ReLU)
    glu  down(act(x Wg) * (x Wu))              gated: SwiGLU (silu; NomicBERT), GeGLU (gelu;
                                               GTE, ModernBERT)
The gated kind keeps Wg and Wu in one (D -> 2F) linear, ``up``: rows [:F] are Wg (through
the activation), rows [F:] are Wu. One matmul instead of two.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import EncoderConfig


def activation_fn(name: str):
    """relu, gelu (exact erf form, as BERT), gelu_tanh (the tanh approximation) or silu."""
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "silu":
        return F.silu
    raise ValueError(f"unknown activation {name!r}; expected relu, gelu, gelu_tanh or silu")


def _in_bias(cfg: EncoderConfig) -> bool:
    return cfg.bias if cfg.ffn_in_bias is None else cfg.ffn_in_bias


class FeedForward(nn.Module):
    """linear (D -> F) -> activation -> dropout -> linear (F -> D)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=_in_bias(cfg))
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation = activation_fn(cfg.activation)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.down(self.dropout(self.activation(self.up(x))))


class GatedFeedForward(nn.Module):
    """linear (D -> 2F) -> act(gate) * value -> dropout -> linear (F -> D)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=_in_bias(cfg))
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation = activation_fn(cfg.activation)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        gate, value = self.up(x).chunk(2, dim=-1)  # (B, T, F) each
        return self.down(self.dropout(self.activation(gate) * value))


FEED_FORWARD = {"mlp": FeedForward, "glu": GatedFeedForward}


def feed_forward(cfg: EncoderConfig) -> nn.Module:
    """The feed-forward network cfg.feed_forward names."""
    return FEED_FORWARD[cfg.feed_forward](cfg)
