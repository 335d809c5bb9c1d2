"""Our bf16 GEMM (csrc/gemm_bf16.c, csrc/gemm_bf16_amx.c): bf16 inputs, float32 sums and
output, the weights packed once. What ``encode(dtype="bfloat16")`` runs on CPUs with
AVX512-BF16 (precision.Bf16Linear holds the packed weights); with ``gelu_bias`` the up
projection's bias + GELU run on each register tile and the result is stored as bf16; with
``norm`` the out and down projections' bias + residual + LayerNorm run on each task's whole
rows while they are in cache (post_norm_layer: encode's bf16 layer).

Its own module because it is its own operation: a GEMM with a packed operand and a bound of
its own, beside the float32 GEMMs (gemm_f32.py, kernels.gemm_f32). The kernel sets, the
layout checks and the elementwise and attention kernels it builds on stay in kernels.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import kernels

# The weights are packed once into panels of GEMM_PANEL columns (pairs of k side by side, what
# vdpbf16ps multiplies, and AMX's B-tile layout: gemm_bf16_amx.c reads the same panels, 16
# columns x 32 k a tile).
GEMM_PANEL = 48
# |ours - exact| <= GEMM_BF16_ERROR K sum_k |a_k w_k| (+ 1e-30) against float64 on the same bf16
# inputs: the products are exact in float32, so this is a float32 sum's bound (K roundings of
# one unit in the last place each), K the inner dimension. On AMX (TDPBF16PS) too, for inputs
# without bf16 subnormals: AMX reads those as zero and flushes subnormal sums (at most K 2^-126,
# inside the 1e-30), so a term with a subnormal factor may also be lost whole.
GEMM_BF16_ERROR = 2.0 ** -24
last_kernel = ""  # "amx" or "avx512bf16": which kernel the last gemm call ran
# The GELU of gemm's epilogue, whose result is rounded to bf16 next: |ours - gelu(v)| <=
# GELU_BF16_RELATIVE_ERROR |gelu(v)| before that rounding (v the float32 GEMM output + bias), a
# cheaper fit than kernels.bias_gelu_'s (csrc/simd512.h), 1/200 of the bf16 rounding's 2**-9.
GELU_BF16_RELATIVE_ERROR = 1e-5


def can_gemm(k: int, m: int) -> bool:
    """Whether gemm runs here for inner width k and output width m."""
    return kernels.supports_bf16() and k % 16 == 0 and m % 16 == 0 and kernels._has("gemm_bf16")


def pack_weight(weight: Tensor) -> Tensor:
    """(M, K) weight -> its values rounded to bf16 (nearest even) in gemm's layout:
    panel by panel of GEMM_PANEL rows of the weight, (K / 2, width, 2) each. -> (M K,) bf16."""
    M, K = weight.shape
    if K % 2 or M % 16:
        raise ValueError(f"pack_weight needs an even K and M divisible by 16, got ({M}, {K})")
    w = weight.detach().to(torch.bfloat16)
    panels = [w[c0:c0 + GEMM_PANEL].reshape(-1, K // 2, 2).transpose(0, 1).reshape(-1)
              for c0 in range(0, M, GEMM_PANEL)]
    return torch.cat(panels).contiguous()


def unpack_weight(packed: Tensor, m: int, k: int) -> Tensor:
    """pack_weight's inverse: (M, K) bf16."""
    parts = []
    for c0 in range(0, m, GEMM_PANEL):
        width = min(GEMM_PANEL, m - c0)
        panel = packed[c0 * k:(c0 + width) * k].view(k // 2, width, 2)
        parts.append(panel.transpose(0, 1).reshape(width, k))
    return torch.cat(parts)


def gemm(x: Tensor, packed: Tensor, m: int, gelu_bias: Tensor | None = None,
         isa: str | None = None, norm: Norm | None = None,
         copy_bf16: Tensor | None = None) -> Tensor:
    """x W^T for x (N, K) float32 (rounded to bf16 on the way in) or bfloat16 (taken as it is)
    and W (M, K) packed by pack_weight: bf16 products, float32 sums, (N, M) float32 out. Needs
    can_gemm(K, M). With ``gelu_bias`` (M,) float32: gelu(x W^T + gelu_bias) on each float32
    register tile, to GELU_BF16_RELATIVE_ERROR, rounded to bf16 as stored (an FFN's up
    projection feeding a bf16 down projection): (N, M) bfloat16. With ``norm`` = (bias,
    residual (N, M), gamma, beta, eps), all float32 (needs can_norm()): LayerNorm(x W^T + bias +
    residual) * gamma + beta on each task's whole rows while they are in cache, bit for bit
    kernels.add_layer_norm_ on the GEMM's output; ``copy_bf16`` (N, M) bf16 then also gets the
    result rounded to bf16 (the next bf16 GEMM's input). The kernel: AMX tiles on the amx set
    (``isa``, default kernels.ISA) where K % 32 == 0, else AVX512-BF16 (last_kernel)."""
    global last_kernel
    kernels._check_rows(x)
    N, K = x.shape
    if (not can_gemm(K, m) or packed.numel() != m * K
            or packed.dtype != torch.bfloat16 or not packed.is_contiguous()):
        raise ValueError(f"gemm_bf16 takes (N, K) rows, K and M divisible by 16 and "
                         f"(M K,) packed weights on the avx512bf16 kernel set: got {x.dtype} "
                         f"({N}, {K}), M={m}, {packed.numel()} packed values, "
                         f"set {kernels.ISA!r}")
    isa = isa or kernels.ISA
    if isa not in kernels.AVAILABLE[2:]:
        raise ValueError(f"gemm_bf16 runs on the avx512bf16 or amx kernel set, not {isa!r} "
                         f"(this CPU: {kernels.AVAILABLE})")
    ext = kernels._kernels
    amx = isa == "amx" and K % 32 == 0 and kernels._has("gemm_bf16_amx")
    name = "gemm_bf16_amx" if amx else "gemm_bf16"
    last_kernel = "amx" if amx else "avx512bf16"
    threads = torch.get_num_threads()
    a = x
    if x.dtype == torch.float32:
        a = torch.empty(N, K, dtype=torch.bfloat16)
        ext.to_bf16(x.data_ptr(), a.data_ptr(), N, K, threads)
    args = (a.data_ptr(), packed.data_ptr())
    if norm is not None:
        if gelu_bias is not None:
            raise ValueError("one epilogue at a time: gelu_bias or norm")
        out = torch.empty(N, m)
        getattr(ext, name + "_norm")(*args, out.data_ptr(), N, m, K, m, threads,
                                     *_norm_args(norm, N, m, copy_bf16))
        return out
    if copy_bf16 is not None:
        raise ValueError("copy_bf16 goes with norm")
    run = getattr(ext, name)
    if gelu_bias is None:
        out = torch.empty(N, m)
        run(*args, out.data_ptr(), N, m, K, m, threads)
        return out
    _check_vector(gelu_bias, m, "gelu_bias")
    out = torch.empty(N, m, dtype=torch.bfloat16)
    run(*args, out.data_ptr(), N, m, K, m, threads, gelu_bias.data_ptr())
    return out


# gemm's LayerNorm epilogue: (bias (M,), residual (N, M), gamma (M,), beta (M,), eps)
Norm = tuple[Tensor, Tensor, Tensor, Tensor, float]


def can_norm() -> bool:
    """Whether this build's bf16 GEMMs take gemm's ``norm`` (an older _kernels does not: the
    fused layer then runs add_layer_norm_ after the GEMM)."""
    return kernels._has("gemm_bf16_norm") and kernels._has("gemm_bf16_amx_norm")


def _norm_args(norm: Norm, n: int, m: int, copy_bf16: Tensor | None) -> tuple:
    """The kernels' (bias, residual, gamma, beta, eps, copy16) pointers, checked."""
    if not can_norm():
        raise ValueError("this build of seqenc._kernels has no LayerNorm epilogue in its bf16 "
                         "GEMMs (rebuild: make setup)")
    bias, residual, gamma, beta, eps = norm
    for name, v in (("bias", bias), ("gamma", gamma), ("beta", beta)):
        _check_vector(v, m, name)
    for name, t, dtype in (("residual", residual, torch.float32),
                           ("copy_bf16", copy_bf16, torch.bfloat16)):
        if t is not None and (t.shape != (n, m) or t.dtype != dtype or not t.is_contiguous()
                              or t.device.type != "cpu"):
            raise ValueError(f"{name} must be a contiguous {dtype} ({n}, {m}) CPU tensor")
    copy = 0 if copy_bf16 is None else copy_bf16.data_ptr()
    return (bias.data_ptr(), residual.data_ptr(), gamma.data_ptr(), beta.data_ptr(),
            float(eps), copy)


def _check_vector(v: Tensor, m: int, name: str) -> None:
    if v.shape != (m,) or v.dtype != torch.float32 or not v.is_contiguous():
        raise ValueError(f"{name} must be a contiguous float32 vector of {m}")


def fuses_layer(x: Tensor, w: kernels.PostNormWeights) -> bool:
    """Whether post_norm_layer runs this layer: float32 rows, out, up and down weights that
    take bf16 rows into our GEMM here (precision.Bf16Linear on the CPU), float32 vectors, and
    a build whose bf16 GEMMs take the LayerNorm epilogue."""
    return (x.dtype == torch.float32 and can_norm()
            and all(getattr(m, "takes_bf16_rows", lambda: False)() and hasattr(m, "matmul_norm")
                    for m in (w.out_weight, w.up_weight, w.down_weight))
            and all(isinstance(v, Tensor) and v.dtype == torch.float32 and v.is_contiguous()
                    for v in (w.out_bias, w.up_bias, w.down_bias, w.norm1_weight,
                              w.norm1_bias, w.norm2_weight, w.norm2_bias)))


def post_norm_layer(x: Tensor, starts: Tensor, lengths: Tensor, n_heads: int, eps: float,
                    w: kernels.PostNormWeights) -> Tensor:
    """kernels.fused_post_norm_layer with bf16 GEMMs (fuses_layer): the out and down GEMMs
    run bias + residual + LayerNorm on their rows while in cache (the out GEMM also writes the
    up GEMM's bf16 input), the up GEMM bias + GELU; the same arithmetic in the same order as
    the GEMMs followed by add_layer_norm_, so the same bits. x (N, D) packed rows -> (N, D)."""
    qkv = kernels.matmul(x, w.qkv_weight)  # (N, 3D) float32; the attention kernel adds the bias
    context = kernels.varlen_attention(qkv, starts, lengths, n_heads, w.qkv_bias,
                                       torch.bfloat16)  # (N, D) bf16
    a16 = torch.empty(x.shape, dtype=torch.bfloat16)
    a = w.out_weight.matmul_norm(context, (w.out_bias, x, w.norm1_weight, w.norm1_bias, eps),
                                 copy_bf16=a16)  # (N, D) float32, and a16 its bf16 copy
    hidden = w.up_weight.matmul_gelu(a16, w.up_bias)  # (N, F) bf16
    return w.down_weight.matmul_norm(hidden, (w.down_bias, a, w.norm2_weight, w.norm2_bias, eps))
