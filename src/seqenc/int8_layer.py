"""An int8 post-norm BERT layer at inference with the work after each GEMM inside the GEMM's
own tasks (csrc/gemm_int8.c's epilogues): what nn.kernels.fused_post_norm_layer runs when every
linear of the layer is a seqenc.int8.Int8Linear on a kernel of FUSING_GEMMS.

Its own module because it is the layer's forward, not the linear layer: int8.py quantises
and multiplies one linear (Int8Linear, its kernel and schedule); this composes four of them
with the attention kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import int8

if TYPE_CHECKING:
    from .nn.kernels import PostNormWeights

# The kernels whose tasks run the layer's next step by default (gemm_int8.c's epilogues). The
# avx2 (int16) kernel can too (bit-identical, tested) but measured no gain on an AVX2-only Zen 3
# (encode, 2 batches in flight, quiet: 228.6 texts/s fused vs 235.2 separate; RESULTS.md), so
# it runs the separate passes unless this tuple names it.
FUSING_GEMMS: tuple[str, ...] = ("amx", "vnni512")


def fuses_layer(w: PostNormWeights) -> bool:
    """Whether post_norm_layer runs this layer: every linear an int8.Int8Linear on a kernel of
    FUSING_GEMMS, all of one width, int8.SCHEDULE "fused", float32 vectors."""
    linears = (w.qkv_weight, w.out_weight, w.up_weight, w.down_weight)
    # one kernel, or 8-lane ones (avx2-u7s7 with its down projection on avx2-u8s7): the
    # epilogues' width (16 lanes for amx and vnni512) must be the separate kernels' in every GEMM
    lanes = {getattr(m, "gemm", None) in int8.WIDE_GEMMS for m in linears}
    return int8.schedule().startswith("fused") and len(lanes) == 1 and all(
        isinstance(m, int8.Int8Linear) and m.gemm in FUSING_GEMMS for m in linears) and all(
        v.dtype == torch.float32 and v.is_contiguous()
        for v in (w.out_bias, w.up_bias, w.down_bias, w.norm1_weight, w.norm1_bias,
                  w.norm2_weight, w.norm2_bias))


def post_norm_layer(x: Tensor, starts: Tensor, lengths: Tensor, n_heads: int, eps: float,
                    w: PostNormWeights) -> Tensor:
    """nn.kernels.fused_post_norm_layer for int8 layers (fuses_layer(w)), with the work after
    each GEMM in the GEMM's own tasks: bias + GELU on each tile of the up projection (on
    amx and vnni512 the int8 GELU, nn.kernels.GELU_INT8_ERROR: int8.gelu_for_int8), then its
    rows quantised for the down projection (the float32 (N, F) matrix is never stored), bias +
    residual + LayerNorm on each task's rows of the out and down projections (the same float32
    arithmetic as the separate kernels, so the same result). A layer is then five parallel
    loops (four of gemm_int8.c, the attention kernel's) against sixteen, and fewer passes over
    memory. Runs where int8.schedule() is fused: calls with one thread (encode's batches), on
    the kernels of FUSING_GEMMS (avx2's too when named: 8-lane epilogues, elementwise.c's).
    x (N, D) float32 packed rows -> (N, D)."""
    from .nn.kernels import varlen_attention

    qkv = w.qkv_weight.matmul(x.contiguous())  # (N, 3D); the attention kernel adds the bias
    context = varlen_attention(qkv, starts, lengths, n_heads, w.qkv_bias)  # (N, D)
    a = w.out_weight._own_gemm(context, norm=(w.out_bias, x, w.norm1_weight, w.norm1_bias,
                                              eps))  # LN1(x + attention)
    # (N, F) GELU rows, quantised for the down projection while in the up GEMM's cache
    hidden = w.up_weight._own_gemm(a, gelu_bias=w.up_bias, feeds=w.down_weight)
    return w.down_weight._own_gemm(hidden, norm=(w.down_bias, a, w.norm2_weight, w.norm2_bias,
                                                 eps))  # (N, D)
