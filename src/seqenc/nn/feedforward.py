"""Position-wise feed-forward network: the same two-layer MLP applied to every token."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import EncoderConfig


def activation_fn(name: str):
    """relu, gelu (exact erf form, as BERT) or gelu_tanh (the tanh approximation)."""
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(f"unknown activation {name!r}; expected relu, gelu or gelu_tanh")


class FeedForward(nn.Module):
    """linear (D -> d_ff) -> activation -> dropout -> linear (d_ff -> D)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation = activation_fn(cfg.activation)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.down(self.dropout(self.activation(self.up(x))))
