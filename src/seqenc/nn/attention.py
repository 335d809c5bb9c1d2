"""Multi-head self-attention: every token looks at every real token of its sequence.

    project    x -> queries | keys | values              one fused (D -> 3D) linear
    positions  rotate queries and keys (rotary), if the config says so
    attend     softmax(Q K^T / sqrt(hd) + bias) V per head, heads merged again
    project    merged heads -> (D -> D) output
How "attend" runs (written-out softmax, SDPA, chunked matmuls, our C kernel over packed rows)
is the batch's plan (plan.py), chosen once by the Encoder; the table lives in attend.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attend import ATTENTION, scaled_dot_product_attention
from .config import EncoderConfig
from .plan import Plan, make_plan
from .positions import apply_rotary

__all__ = ["MultiHeadSelfAttention", "attention_bias", "scaled_dot_product_attention"]


def attention_bias(keep: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """(B, T) keep-mask (True/1 = real token) -> additive bias (B, 1, 1, T): 0 or dtype's min.

    A finite minimum rather than -inf keeps an all-padding row finite (uniform weights)
    instead of NaN; real rows still put exactly zero weight on padding after softmax.
    """
    if keep is None:
        return None
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    bias.masked_fill_(~keep.bool(), torch.finfo(dtype).min)
    return bias[:, None, None, :]  # (B, 1, 1, T)


class MultiHeadSelfAttention(nn.Module):
    """Project to queries, keys and values, attend per head, merge heads, project out.

    Q, K and V come from one fused (D, 3D) projection: one matmul instead of three.
    ``kind`` is "global" (whole sequence) or "local" (within cfg.attention_window).
    """

    def __init__(self, cfg: EncoderConfig, kind: str = "global"):
        super().__init__()
        self.cfg = cfg
        self.kind = kind
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False, *,
                plan: Plan | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) -> (B, T, D) and weights (B, H, T, T) or None.

        Inside an Encoder, ``plan`` says how (and x is (N, D) real tokens when it packs);
        called alone, ``mask`` is a (B, T) keep-mask (True = real token) or None.
        """
        if plan is None:
            plan = make_plan(self.cfg, x, mask, training=self.training,
                             need_weights=need_weights, pack=False)
        how = plan.attention[self.kind]
        qkv = self.qkv(x)  # (B, T, 3D) or (N, 3D)
        if how.rotary is not None:
            qkv = apply_rotary(qkv, *how.rotary, self.n_heads, self.cfg.rotary_interleaved)
        y, weights = ATTENTION[how.implementation](qkv, self.n_heads, how.bias, plan)  # (B, T, D)
        return self.out(y), weights
