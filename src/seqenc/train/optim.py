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
    """AdamW; no weight decay on biases and LayerNorm weights (every 1-d parameter), as BERT.
    With ``cfg.head_lr`` the task head (parameters under ``head.``) gets its own peak learning
    rate: a new, randomly initialised head can move faster than the pretrained encoder. The
    schedule scales every group by the same factor."""
    # (head?, decayed?) -> parameters; the encoder's groups come first (the logged lr is
    # group 0's) in the order checkpoints written before head_lr existed hold them.
    split: dict[tuple[bool, bool], list[nn.Parameter]] = {
        key: [] for key in ((False, True), (False, False))
        + (((True, True), (True, False)) if cfg.head_lr is not None else ())}
    for name, param in model.named_parameters():
        if param.requires_grad:
            head = cfg.head_lr is not None and name.startswith("head.")
            split[(head, param.dim() >= 2)].append(param)
    groups = [{"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
               "lr": cfg.head_lr if head else cfg.lr}
              for (head, decay), params in split.items()]
    try:  # the fused kernel is several times faster on CPU and GPU alike
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - builds without the fused kernel
        return torch.optim.AdamW(groups, lr=cfg.lr)


