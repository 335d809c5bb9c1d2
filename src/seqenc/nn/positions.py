"""Position schemes: how an encoder learns where each token sits.

Absolute schemes add a vector per position to the embeddings (``cfg.position_encoding``):
    learned         a trained table row per position 0, 1, ...             BERT
    learned_offset  the same, numbered from pad_token_id + 1, padding      RoBERTa, XLM-R, MPNet
                    tokens at pad_token_id
    sinusoidal      the paper's fixed sin/cos table                        Vaswani et al.
Relative schemes act inside attention (``cfg.relative_positions``):
    rotary          queries and keys turned by position-dependent angles   NomicBERT, GTE,
                                                                           ModernBERT
    buckets         a learned per-head bias for each bucket of j - i       MPNet (T5's buckets)

Shapes: B batch, T positions, H heads, hd head size, P table rows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import EncoderConfig


def sinusoidal_positions(n_positions: int, d_model: int) -> Tensor:
    """The paper's PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): (P, D)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )  # (ceil(D/2),)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table.float()


def offset_position_ids(input_ids: Tensor, pad_token_id: int) -> Tensor:
    """RoBERTa's numbering: real tokens pad_token_id + 1, + 2, ...; padding tokens pad_token_id.

    input_ids (B, T) -> (B, T). Counts only non-padding ids, as fairseq did, so a [PAD] id
    inside a sequence does not advance the count.
    """
    real = (input_ids != pad_token_id).long()  # (B, T)
    return torch.cumsum(real, dim=1) * real + pad_token_id


# ----------------------------------------------------------------------------- rotary (RoPE)


def rotary_tables(positions: Tensor, head_dim: int, base: float, interleaved: bool,
                  dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and sin of angle pos * base^(-2i/hd) for every position: (..., hd) each.

    The angles are computed in float32 (as transformers does) and then cast to ``dtype``.
    Rotate-half layout pairs feature i with i + hd/2, so the hd/2 angles repeat as two halves;
    the interleaved layout pairs 2i with 2i + 1, so each angle repeats twice in place.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32,
                                            device=positions.device) / head_dim))  # (hd/2,)
    angles = positions.to(torch.float32)[..., None] * inv_freq  # (..., hd/2)
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)  # (..., hd): a0 a0 a1 a1 ...
    else:
        angles = torch.cat((angles, angles), dim=-1)  # (..., hd): a0 a1 ... a0 a1 ...
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: Tensor, interleaved: bool) -> Tensor:
    """The 90-degree turn of each feature pair: (a, b) -> (-b, a). x (..., hd)."""
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))  # (..., hd/2, 2)
        return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(qkv: Tensor, cos: Tensor, sin: Tensor, n_heads: int,
                 interleaved: bool) -> Tensor:
    """Rotate the queries and keys of a fused projection by their positions' angles.

    qkv (..., 3D) with columns q | k | v, heads of hd inside each; cos, sin (..., hd)
    broadcasting against the leading dims (padded (1, T, hd) or packed rows (N, hd)).
    Returns a new (..., 3D) tensor; the values pass through unchanged.
    """
    q, k, v = qkv.unflatten(-1, (3, n_heads, -1)).unbind(-3)  # (..., H, hd) each
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (..., 1, hd): same angle for every head
    q = q * cos + rotate(q, interleaved) * sin
    k = k * cos + rotate(k, interleaved) * sin
    return torch.cat((q.flatten(-2), k.flatten(-2), v.flatten(-2)), dim=-1)  # (..., 3D)


# ------------------------------------------------------------- relative position buckets


def relative_buckets(relative: Tensor, n_buckets: int, max_distance: int) -> Tensor:
    """Bucket index of each relative distance j - i (T5/MPNet, bidirectional): int64, same shape.

    Half the buckets are for keys before the query, half for keys after; within each half,
    distances below n/4 get a bucket each and longer ones share log-spaced buckets up to
    max_distance, beyond which everything falls in the last bucket.
    """
    half = n_buckets // 2
    n = -relative
    bucket = (n < 0).long() * half  # keys after the query use the upper half
    n = n.abs()
    exact = half // 2
    # log-spaced above `exact`; clamp(min=1) only keeps log finite where `small` is chosen anyway
    large = exact + (torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return bucket + torch.where(n < exact, n, large)


class RelativePositionBias(nn.Module):
    """A learned bias per head for each bucket of j - i, shared by every layer (MPNet)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_buckets, self.max_distance = cfg.relative_buckets, cfg.relative_max_distance
        self.buckets = nn.Embedding(cfg.relative_buckets, cfg.n_heads)

    def forward(self, T: int) -> Tensor:
        """-> additive attention bias (1, H, T, T) for T positions."""
        position = torch.arange(T, device=self.buckets.weight.device)
        relative = position[None, :] - position[:, None]  # (T, T): key j - query i
        bucket = relative_buckets(relative, self.n_buckets, self.max_distance)  # (T, T)
        return self.buckets(bucket).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, T)
