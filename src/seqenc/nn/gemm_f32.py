"""float32 post-norm layers on our x86 kernel sets: our GEMM with the layer's next step inside
it (csrc/gemm_f32_avx2.c on the avx2 set, csrc/gemm_f32.c on the AVX-512 sets), instead of a
GEMM followed by a separate epilogue pass.

bias + GELU run on each register tile of the up projection as it is stored (in L1), bias + residual
+ LayerNorm on each task's rows of the out and down projections while they are in cache; the
GEMM sums in float32 in k order (GEMM_F32_ERROR), the epilogues are the separate kernels'
functions and arithmetic (elementwise.c's with 8 lanes, avx512.c's with 16), so the result is
bit for bit the separate kernels' on our GEMM's output. SEQENC_F32_GEMM=mkl turns it off (to
compare: the separate path then runs, with PyTorch's GEMM on the avx2 set and gemm_f32.c without
its epilogues on the AVX-512 sets).

Each weight is packed into the GEMM's panels on every call (M K copies against 2 N M K flops,
into a buffer each thread keeps). SEQENC_F32_PACK_ONCE=1 packs each weight once instead and
keeps the copy while the weight is unchanged (``packed_weight``: the checks of encode's bf16
and int8 inference copies, precision.current_tensor_copy, so an optimizer step, in place or
fused, makes it pack again), at the memory of a second copy of the float32 weights (MiniLM-L6:
42 MB). Off by default: on the Zen 3 of issue 14 it was not measurably faster (0.99-1.03x
encode), on the Sapphire Rapids Xeon 1.01x (CPU time, 1 thread; benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torch.utils.weak import WeakTensorKeyDictionary

from . import kernels

# |ours - exact| <= GEMM_F32_ERROR K sum_k |a_k w_k| + 1e-30 (a float32 dot product's bound)
GEMM_F32_ERROR = kernels.GEMM_F32_ERROR
ENABLED = os.environ.get("SEQENC_F32_GEMM", "ours") != "mkl"
PACK_ONCE = os.environ.get("SEQENC_F32_PACK_ONCE", "0") == "1"


def can_gemm(k: int, m: int) -> bool:
    """Whether gemm runs here for inner width k and output width m: the avx2 set's kernel, or
    on the AVX-512 sets csrc/gemm_f32.c, which takes the same epilogues."""
    if not (ENABLED and kernels.ENABLED and m % 16 == 0 and k > 0):
        return False
    if kernels.ISA == "avx2":
        return kernels._has("gemm_f32_avx2")
    # gemm_f32_packed: a build whose gemm_f32 takes the epilogues (an older one runs the
    # separate path)
    return kernels.can_gemm_f32(k, m) and kernels._has("gemm_f32_packed")


def gemm(x: Tensor, weight: Tensor, gelu_bias: Tensor | None = None,
         norm: tuple[Tensor, Tensor, Tensor, Tensor, float] | None = None) -> Tensor:
    """x W^T for x (N, K) and W (M, K) float32 -> (N, M) float32 (W packed on the call, or
    its kept copy with PACK_ONCE). ``gelu_bias`` (M,): gelu(x W^T + gelu_bias) (erf form);
    ``norm`` = (bias, residual (N, M), gamma, beta, eps): LayerNorm(x W^T + bias + residual)
    * gamma + beta."""
    N, K, M = kernels.check_f32_gemm("gemm", x, weight, can_gemm, "an x86 kernel set")
    out = torch.empty(N, M)
    epilogue: tuple = ()
    if gelu_bias is not None and norm is not None:
        raise ValueError("one epilogue at a time: gelu_bias or norm")
    if gelu_bias is not None:
        _check_vector(gelu_bias, M)
        epilogue = (gelu_bias.data_ptr(),)
    elif norm is not None:
        bias, residual, gamma, beta, eps = norm
        for v in (bias, gamma, beta):
            _check_vector(v, M)
        if (residual.shape != (N, M) or residual.dtype != torch.float32
                or not residual.is_contiguous()):
            raise ValueError(f"the residual must be a contiguous float32 ({N}, {M}) tensor")
        epilogue = (0, bias.data_ptr(), residual.data_ptr(), gamma.data_ptr(), beta.data_ptr(),
                    float(eps))
    packed = packed_weight(weight) if PACK_ONCE else None
    # gemm_f32.c on the AVX-512 sets, gemm_f32_avx2.c on avx2; *_packed: W as packed_weight's
    name = "gemm_f32" if kernels.ISA != "avx2" else "gemm_f32_avx2"
    w = weight if packed is None else packed
    run = getattr(kernels._kernels, name if packed is None else name + "_packed")
    run(x.data_ptr(), w.data_ptr(), out.data_ptr(), N, M, K, M, torch.get_num_threads(),
        *epilogue)
    return out


# weight -> its packed copy (precision.current_tensor_copy's records; weak: a weight dropped
# takes its copy along), one per kernel: gemm_f32_avx2.c's panels and gemm_f32.c's differ
_packed = {"avx2": WeakTensorKeyDictionary(), "avx512": WeakTensorKeyDictionary()}


def packed_weight(weight: Tensor) -> Tensor | None:
    """The GEMM's packed copy of a contiguous float32 (M, K) CPU weight (M % 16 == 0), made
    again whenever the weight changed since (precision.current_tensor_copy: an in-place write,
    its storage replaced, a fused optimizer step; not an in-place write through
    ``weight.data``); None for an inference tensor (no version counter to tell: packed on
    each call)."""
    from .. import precision

    if weight.is_inference():
        return None
    kind = "avx2" if kernels.ISA == "avx2" else "avx512"
    return precision.current_tensor_copy(_packed[kind], weight,
                                         lambda w: _pack(w, kind))


def _pack(weight: Tensor, kind: str) -> Tensor:
    M, K = weight.shape
    packed = torch.empty(M * K + 16)
    offset = (-packed.data_ptr() % 64) // 4  # 64-byte aligned panels
    packed = packed[offset:offset + M * K]
    pack = kernels._kernels.pack_f32_avx2 if kind == "avx2" else kernels._kernels.pack_f32
    pack(weight.data_ptr(), packed.data_ptr(), M, K)
    return packed


def _check_vector(v: Tensor, m: int) -> None:
    if v.shape != (m,) or v.dtype != torch.float32 or not v.is_contiguous():
        raise ValueError(f"expected a contiguous float32 vector of {m}")


def fuses_layer(x: Tensor, w: kernels.PostNormWeights) -> bool:
    """Whether post_norm_layer runs this layer: float32 rows, every weight a contiguous float32
    tensor whose shape gemm takes, every vector float32 and contiguous."""
    linears = (w.qkv_weight, w.out_weight, w.up_weight, w.down_weight)
    return (x.dtype == torch.float32
            and all(isinstance(m, Tensor) and m.dtype == torch.float32 and m.is_contiguous()
                    and m.device.type == "cpu" and can_gemm(m.shape[1], m.shape[0])
                    for m in linears)
            and all(isinstance(v, Tensor) and v.dtype == torch.float32 and v.is_contiguous()
                    for v in (w.qkv_bias, w.out_bias, w.up_bias, w.down_bias, w.norm1_weight,
                              w.norm1_bias, w.norm2_weight, w.norm2_bias)))


def post_norm_layer(x: Tensor, starts: Tensor, lengths: Tensor, n_heads: int, eps: float,
                    w: kernels.PostNormWeights) -> Tensor:
    """kernels.fused_post_norm_layer for float32 on our x86 kernel sets (fuses_layer): four
    GEMMs and the attention kernel, nothing in between. x (N, D) packed rows -> (N, D)."""
    qkv = gemm(x, w.qkv_weight)  # (N, 3D); the attention kernel adds the bias
    context = kernels.varlen_attention(qkv, starts, lengths, n_heads, w.qkv_bias)
    a = gemm(context, w.out_weight, norm=(w.out_bias, x, w.norm1_weight, w.norm1_bias, eps))
    hidden = gemm(a, w.up_weight, gelu_bias=w.up_bias)  # (N, F) GELU rows
    return gemm(hidden, w.down_weight, norm=(w.down_bias, a, w.norm2_weight, w.norm2_bias, eps))
