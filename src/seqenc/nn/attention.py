"""Multi-head self-attention: every token looks at every real token of its sequence."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import kernels
from .config import EncoderConfig
from .packing import Packing

# On CPU at inference, up to this many positions, batched matmuls over chunks of heads beat
# the fused SDPA kernel for MiniLM's 32-wide heads (2 threads, B=32: T=30 1.0 vs 2.0 ms,
# T=64 3.2 vs 3.9, T=130 12.7 vs 15.3, T=160 16.6 vs 19.1; T=192 22.6 vs 21.2, T=512 158 vs
# 126). A chunk's scores stay near CHUNK_SCORES floats so they are still in cache when
# softmax and the second matmul read them.
CHUNKED_UP_TO = 176
CHUNK_SCORES = 400_000


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


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout: nn.Dropout | None = None
) -> tuple[Tensor, Tensor]:
    """softmax(Q K^T / sqrt(d_k) + bias) V, written out. Returns (output, weights)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
    if bias is not None:
        scores = scores + bias
    weights = scores.softmax(dim=-1)
    attended = dropout(weights) if dropout is not None else weights
    return attended @ v, weights  # (B, H, T, hd), (B, H, T, T)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """softmax(Q K^T / sqrt(d_k) + bias) V as batched matmuls over cache-sized chunks of heads.

    q, k, v (B*H, T, hd); bias (B*H, 1, T) additive or None -> (B*H, T, hd). Inference only
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


def per_head(bias: Tensor | None, n_heads: int) -> Tensor | None:
    """(B, 1, 1, T) -> (B*H, 1, T), the layout chunked_attention takes."""
    if bias is None:
        return None
    B, T = bias.shape[0], bias.shape[-1]
    return bias.expand(B, n_heads, 1, T).reshape(B * n_heads, 1, T)


class MultiHeadSelfAttention(nn.Module):
    """Project to queries, keys and values, attend per head, merge heads, project out.

    Q, K and V come from one fused (D, 3D) projection: one matmul instead of three.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.attention_dropout = nn.Dropout(cfg.attention_dropout)

    def forward(
        self,
        x: Tensor,
        bias: Tensor | None = None,
        need_weights: bool = False,
        packing: Packing | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), bias (B, 1, 1, T) additive -> (B, T, D) and weights (B, H, T, T) or None.

        With ``packing``, x and the result are the (N, D) real tokens of the padded batch.
        """
        qkv = self.qkv(x)  # (B, T, 3D) or (N, 3D)
        inference_cpu = (x.device.type == "cpu" and not self.training and not need_weights
                         and not torch.is_grad_enabled())
        if inference_cpu and kernels.can_attend(qkv, self.n_heads):
            if packing is not None:  # sequences back to back: no gathers, no mask
                y = kernels.varlen_attention(qkv, packing.starts, packing.lengths, self.n_heads)
                return self.out(y), None  # (N, D)
            if bias is None:  # every position real: each row of the batch is one sequence
                B, T = qkv.shape[:2]
                starts = torch.arange(B, dtype=torch.long) * T
                y = kernels.varlen_attention(qkv.reshape(B * T, -1), starts,
                                             torch.full((B,), T, dtype=torch.long), self.n_heads)
                return self.out(y.view(B, T, -1)), None  # (B, T, D)
        T = packing.length if packing is not None else x.shape[1]
        fast_cpu = inference_cpu and T <= CHUNKED_UP_TO
        if packing is not None and not need_weights:
            q, k, v = packing.split_heads(qkv, self.n_heads)  # (B*H, T, hd) each
            if fast_cpu:
                y = chunked_attention(q, k, v, per_head(bias, self.n_heads))
            else:
                y = self.fused_attention(*(t.unflatten(0, (-1, self.n_heads)) for t in (q, k, v)),
                                         bias)  # (B, H, T, hd)
            return self.out(packing.merge_heads(y, self.n_heads)), None  # (N, D)
        B, T, D = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        # (B, T, D) -> (B, H, T, hd)
        q, k, v = (
            t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
            for t in qkv.split(D, dim=-1)
        )
        weights = None
        if need_weights:
            y, weights = scaled_dot_product_attention(q, k, v, bias, self.attention_dropout)
        elif fast_cpu:
            y = chunked_attention(*(t.flatten(0, 1) for t in (q, k, v)),
                                  per_head(bias, self.n_heads)).view(B, self.n_heads, T, -1)
        else:
            y = self.fused_attention(q, k, v, bias)
        y = y.transpose(1, 2).reshape(B, T, D)  # merge heads: (B, T, D)
        return self.out(y), weights

    def fused_attention(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        """PyTorch's SDPA (flash/memory-efficient kernels; dropout when training)."""
        p = self.attention_dropout.p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
