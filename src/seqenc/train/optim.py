"""The optimiser and schedule BERT fine-tuning uses: AdamW without decay on biases and
LayerNorm weights, and a linear warm-up followed by a linear decay to zero."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .config import TrainConfig


def warmup_linear(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier: 0 -> 1 over ``warmup`` steps, then 1 -> 0 at ``total`` (BERT's schedule)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm weights (every 1-d parameter), as BERT."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is several times faster on CPU and GPU alike
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - builds without the fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr)


