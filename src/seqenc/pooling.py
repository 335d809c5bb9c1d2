"""Pooling: token vectors (B, T, D) -> one vector per text (B, D)."""

from __future__ import annotations

import torch
from torch import Tensor

from .choices import POOLINGS as POOLING_MODES  # re-exported: the one list lives there


def pool(hidden: Tensor, keep: Tensor, mode: str) -> Tensor:
    """hidden (B, T, D), keep (B, T) True = real token -> (B, D)."""
    if mode == "cls":
        return hidden[:, 0]
    mask = keep.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    summed = (hidden * mask).sum(dim=1)  # (B, D)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLING_MODES)}")


def pooling_from_config(config: dict) -> str:
    """The mode named by a sentence-transformers ``1_Pooling/config.json``."""
    if "pooling_mode" in config:  # newer sentence-transformers write the mode by name
        mode = {"mean_sqrt_len_tokens": "mean_sqrt_len"}.get(config["pooling_mode"],
                                                             config["pooling_mode"])
        if mode in POOLING_MODES:
            return mode
    flags = {
        "pooling_mode_cls_token": "cls",
        "pooling_mode_mean_tokens": "mean",
        "pooling_mode_max_tokens": "max",
        "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    }
    chosen = [mode for flag, mode in flags.items() if config.get(flag)]
    if len(chosen) != 1:
        raise ValueError(
            f"pooling config must select exactly one supported mode, got {chosen or 'none'} "
            f"(supported: {', '.join(POOLING_MODES)})"
        )
    return chosen[0]
