"""The ways to compute attention, in one table with one signature.

    ATTENTION[name](qkv, n_heads, bias, plan) -> (context, weights or None)

qkv is the fused projection (queries | keys | values, positions already applied) in the
plan's layout: padded (B, T, 3D), or packed (N, 3D) real tokens when plan.packing is set.
context comes back in the same layout with heads merged: (B, T, D) or (N, D). bias is the
additive mask for this layer's kind (see plan.additive_bias), broadcasting to (B, H, T, T).
Each computes softmax(Q K^T / sqrt(hd) + bias) V per head; they differ only in how:

    eager    the formula written out; the only one that returns the weights (B, H, T, T)
    sdpa     PyTorch's fused scaled_dot_product_attention (dropout when training)
    chunked  batched matmuls over cache-sized chunks of heads (CPU inference, short T)
    varlen   our C kernel over packed rows, one sequence at a time (CPU, float32, no bias)

The Encoder's plan (plan.py) picks one per batch and layer kind; the modules never do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from . import kernels

if TYPE_CHECKING:
    from .plan import Plan

# A chunk's scores stay near CHUNK_SCORES floats so they are still in cache when softmax and
# the second matmul read them.
CHUNK_SCORES = 400_000


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(Q K^T / sqrt(d_k) + bias) V, written out. Returns (output, weights)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
    if bias is not None:
        scores = scores + bias
    weights = scores.softmax(dim=-1)
    attended = F.dropout(weights, dropout_p) if dropout_p else weights
    return attended @ v, weights  # (B, H, T, hd), (B, H, T, T)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """softmax(Q K^T / sqrt(d_k) + bias) V as batched matmuls over cache-sized chunks of heads.

    q, k, v (B*H, T, hd); bias (B*H, 1|T, T) additive or None -> (B*H, T, hd). Inference only
    (no dropout; the in-place softmax and out= matmuls have no gradients).
    """
    BH, T, hd = q.shape
    out = torch.empty_like(q)
    chunk = max(1, CHUNK_SCORES // (T * T))
    for lo in range(0, BH, chunk):
        hi = min(lo + chunk, BH)
        k_t = k[lo:hi].transpose(1, 2)  # (c, hd, T)
        if bias is None:
            scores = torch.bmm(q[lo:hi], k_t).mul_(1.0 / math.sqrt(hd))
        else:
            scores = torch.baddbmm(bias[lo:hi], q[lo:hi], k_t, alpha=1.0 / math.sqrt(hd))
        torch.softmax(scores, dim=-1, out=scores)  # (c, T, T)
        torch.bmm(scores, v[lo:hi], out=out[lo:hi])
    return out


def per_head(bias: Tensor | None, B: int, n_heads: int) -> Tensor | None:
    """(B|1, H|1, 1|T, T) -> (B*H, 1|T, T), the layout chunked_attention takes."""
    if bias is None:
        return None
    Tq, T = bias.shape[-2:]
    return bias.expand(B, n_heads, Tq, T).reshape(B * n_heads, Tq, T)


# ------------------------------------------------------------- heads in and out of a layout


def split_heads(qkv: Tensor, n_heads: int, plan: Plan) -> tuple[Tensor, Tensor, Tensor]:
    """Fused projection in the plan's layout -> q, k, v as (B, H, T, hd) each."""
    if plan.packing is not None:  # one gather straight to contiguous (B*H, T, hd)
        return tuple(t.unflatten(0, (-1, n_heads)) for t in plan.packing.split_heads(qkv, n_heads))
    B, T = qkv.shape[:2]
    return qkv.view(B, T, 3, n_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def merge_heads(y: Tensor, plan: Plan) -> Tensor:
    """(B, H, T, hd) -> the plan's layout with heads side by side: (B, T, D) or (N, D)."""
    B, H, T, hd = y.shape
    if plan.packing is not None:
        return plan.packing.merge_heads(y.reshape(B * H, T, hd), H)
    return y.transpose(1, 2).reshape(B, T, H * hd)


# ------------------------------------------------------------------------ implementations


def eager(qkv: Tensor, n_heads: int, bias: Tensor | None, plan: Plan):
    q, k, v = split_heads(qkv, n_heads, plan)  # (B, H, T, hd) each
    y, weights = scaled_dot_product_attention(q, k, v, bias, plan.dropout_p)
    return merge_heads(y, plan), weights


def sdpa(qkv: Tensor, n_heads: int, bias: Tensor | None, plan: Plan):
    q, k, v = split_heads(qkv, n_heads, plan)  # (B, H, T, hd) each
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=plan.dropout_p)
    return merge_heads(y, plan), None


def chunked(qkv: Tensor, n_heads: int, bias: Tensor | None, plan: Plan):
    q, k, v = split_heads(qkv, n_heads, plan)  # (B, H, T, hd) each
    B, H, T, hd = q.shape
    y = chunked_attention(*(t.reshape(B * H, T, hd) for t in (q, k, v)), per_head(bias, B, H))
    return merge_heads(y.view(B, H, T, hd), plan), None


def varlen(qkv: Tensor, n_heads: int, bias: Tensor | None, plan: Plan):
    if bias is not None or plan.spans is None:
        raise ValueError("varlen attention takes sequences back to back, without a bias")
    starts, lengths = plan.spans
    if plan.packing is not None:  # sequences back to back: no gathers, no mask
        return kernels.varlen_attention(qkv, starts, lengths, n_heads), None  # (N, D)
    B, T = qkv.shape[:2]
    y = kernels.varlen_attention(qkv.reshape(B * T, -1), starts, lengths, n_heads)
    return y.view(B, T, -1), None  # (B, T, D)


AttentionFn = Callable[[Tensor, int, "Tensor | None", "Plan"], "tuple[Tensor, Tensor | None]"]
ATTENTION: dict[str, AttentionFn] = {
    "eager": eager, "sdpa": sdpa, "chunked": chunked, "varlen": varlen,
}
