"""The execution plan: how one batch runs, decided once by the Encoder and read by every layer.

The modules say *what* an encoder computes; the plan says *how* this batch computes it:
    packing      run the layers on the (N, D) real tokens only, or on the padded (B, T, D) batch
    attention    which entry of attend.ATTENTION each kind of layer calls (eager | sdpa |
                 chunked | varlen), with the additive bias (padding, window, relative buckets)
                 and rotary angles it needs, already in the batch's layout
    fused_layers whether BERT-style post-norm layers run through our fused CPU kernels
                 (float32; bfloat16 too where the CPU has the avx512bf16 kernel set)
Every choice depends only on the config, the batch (mask, dtype, device) and the mode
(training, autograd, attention weights requested), so it is made here, once, not in forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import kernels
from .config import EncoderConfig
from .packing import Packing, worth_packing
from .positions import rotary_tables

# On CPU at inference, up to this many positions, batched matmuls over chunks of heads beat
# the fused SDPA kernel for MiniLM's 32-wide heads (2 threads, B=32: T=30 1.0 vs 2.0 ms,
# T=64 3.2 vs 3.9, T=130 12.7 vs 15.3, T=160 16.6 vs 19.1; T=192 22.6 vs 21.2, T=512 158 vs
# 126).
CHUNKED_UP_TO = 176

KINDS = ("global", "local")  # layers attending over the whole sequence / within a window


@dataclass(frozen=True)
class AttentionPlan:
    """How the layers of one kind attend in this batch."""

    implementation: str  # key of attend.ATTENTION
    bias: Tensor | None  # additive, broadcasts to (B, H, T, T); None: nothing masked
    rotary: tuple[Tensor, Tensor] | None  # cos, sin (rows, hd) in the layers' layout


@dataclass(frozen=True)
class Plan:
    attention: dict[str, AttentionPlan]  # per layer kind, see KINDS
    packing: Packing | None  # layers see (N, D) real tokens; None: (B, T, D)
    spans: tuple[Tensor, Tensor] | None  # (starts, lengths) of each sequence's rows: varlen
    fused_layers: bool  # post-norm BERT layers through kernels.fused_post_norm_layer
    need_weights: bool  # layers return their attention weights (B, H, T, T)
    dropout_p: float  # attention dropout (training only)


def make_plan(
    cfg: EncoderConfig,
    x: Tensor,
    keep: Tensor | None,
    *,
    training: bool,
    need_weights: bool = False,
    position_bias: Tensor | None = None,
    pack: bool = True,
) -> Plan:
    """The plan for embeddings x (B, T, D) with keep-mask (B, T) (True = real token) or None.

    ``position_bias`` (1, H, T, T) is MPNet's relative bias, computed once by the Encoder.
    ``pack=False`` keeps the padded layout (a layer or attention module called on its own:
    only the Encoder packs and unpacks).
    """
    B, T = x.shape[:2]
    if keep is not None and not need_weights and bool(keep.all()):
        keep = None  # nothing to mask: kernels may skip the bias altogether
    # autograd off, not training, no weights asked for: the fast CPU paths may run
    inference = not training and not need_weights and not torch.is_grad_enabled()
    packing = None
    if pack and not training and not need_weights and worth_packing(keep):
        packing = Packing.from_mask(keep)
    spans = None
    if packing is not None:
        spans = (packing.starts, packing.lengths)
    elif keep is None:  # every position real: each row of the batch is one sequence
        spans = (torch.arange(B, dtype=torch.long) * T, torch.full((B,), T, dtype=torch.long))
    cpu_kernels = (inference and x.device.type == "cpu" and spans is not None
                   and kernels.can_attend_shape(x.dtype, cfg.head_dim))
    attention = {}
    for kind in KINDS if cfg.attention_window else KINDS[:1]:
        window = cfg.attention_window if kind == "local" else 0
        bias = additive_bias(keep, window, position_bias, T, x.dtype, x.device)
        if need_weights:
            implementation = "eager"  # the written-out softmax: the only one with weights
        elif cpu_kernels and not window and position_bias is None:
            implementation, bias = "varlen", None  # our C kernel: packed rows, no mask
        elif inference and x.device.type == "cpu" and T <= CHUNKED_UP_TO:
            implementation = "chunked"
        else:
            implementation = "sdpa"
        attention[kind] = AttentionPlan(implementation, bias, rotary(cfg, kind, packing, T, x))
    if "local" not in attention:
        attention["local"] = attention["global"]
    fused = (all(a.implementation == "varlen" for a in attention.values())
             and kernels.can_fuse(
                 dtype=x.dtype, norm=cfg.norm, activation=cfg.activation,
                 feed_forward=cfg.feed_forward,
                 bias=cfg.bias and cfg.ffn_in_bias is not False and cfg.norm_bias,
                 rotary=cfg.relative_positions == "rotary", d_model=cfg.d_model,
                 n_heads=cfg.n_heads, d_ff=cfg.d_ff))
    return Plan(attention, packing, spans, fused, need_weights,
                cfg.attention_dropout if training else 0.0)


def additive_bias(keep: Tensor | None, window: int, position_bias: Tensor | None, T: int,
                  dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """What attention adds to its scores: 0 where a query may look, dtype's min where not,
    plus the relative position bias. -> (B|1, H|1, 1|T, T) or None.

    keep (B, T) hides padding keys; a window w hides keys further than w // 2 from the query.
    A finite minimum rather than -inf keeps an all-hidden row finite (uniform weights)
    instead of NaN, and two hidden reasons never add up to -inf.
    """
    allowed = None if keep is None else keep.bool()[:, None, None, :]  # (B, 1, 1, T)
    if window:
        position = torch.arange(T, device=device)
        near = (position[None, :] - position[:, None]).abs() <= window // 2  # (T, T)
        allowed = near[None, None] if allowed is None else allowed & near  # (B|1, 1, T, T)
    bias = None
    if allowed is not None:
        bias = torch.zeros(allowed.shape, dtype=dtype, device=device)
        bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    if position_bias is not None:
        position_bias = position_bias.to(dtype)
        bias = position_bias if bias is None else bias + position_bias  # (B|1, H, T, T)
    return bias


def rotary(cfg: EncoderConfig, kind: str, packing: Packing | None, T: int,
           x: Tensor) -> tuple[Tensor, Tensor] | None:
    """cos, sin for each row the layers see: (1, T, hd) padded, (N, hd) packed."""
    if cfg.relative_positions != "rotary":
        return None
    base = cfg.rotary_base
    if kind == "local" and cfg.rotary_local_base is not None:
        base = cfg.rotary_local_base
    if packing is not None:
        positions = packing.index % T  # (N,): each real token's position in its sequence
    else:
        positions = torch.arange(T, device=x.device)[None]  # (1, T)
    return rotary_tables(positions, cfg.head_dim, base, cfg.rotary_interleaved, x.dtype)
