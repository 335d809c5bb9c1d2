"""Our C kernels (src/seqenc/csrc/) for CPU inference, and when they apply.

``varlen_attention`` attends over sequences packed back to back in one (N, 3D) projection, so
a packed batch needs no gather into a padded layout and no mask. It runs when the optional
extension was built, the CPU has AVX2 + FMA, and the tensors are float32 (or bfloat16, computed
in float32) on the CPU with a head size that is a multiple of 8; otherwise seqenc runs
PyTorch's kernels. Set SEQENC_KERNELS=0 to turn ours off (to compare, or to rule them out).

Kernel sets, chosen once at import by what the CPU has (``ISA``; ``SEQENC_ISA=avx2``,
``avx512`` or ``avx512bf16`` caps it, e.g. to compare them on one machine):
- ``avx2``: AVX2 + FMA, float32, 8 lanes (every kernel);
- ``avx512``: AVX-512 F/BW/VL/DQ: the elementwise epilogues with 16 lanes when the width is a
  multiple of 16, attention with 16 lanes when the head size is, and ``gemm_f32``: the fused layers'
  float32 GEMMs with 512-bit FMAs (MKL's sgemm ran its AVX2 code here);
- ``avx512bf16``: also AVX512-BF16: the bf16 GEMM (nn/gemm_bf16.py: bf16 inputs, float32 sums
  and output: what ``encode(dtype="bfloat16")`` runs, see seqenc/precision.py), and epilogues
  that read and write bfloat16 as well (float32 arithmetic, one round-to-nearest-even on the
  way out), so an encoder cast to bf16 (precision.cast_encoder; not what ``encode`` runs here)
  keeps the fused path too, its GEMMs then PyTorch's bf16 matmuls;
- ``amx``: also AMX-TILE + AMX-BF16, with Linux's permission for the tile data (asked at
  import): the bf16 GEMM on AMX tiles (csrc/gemm_bf16_amx.c; the same packed weights, the same
  bound) where K % 32 == 0, the avx512bf16 kernel otherwise; everything else as avx512bf16.
int8 (``encode(dtype="int8")``, seqenc/int8.py) runs on our csrc/gemm_int8.c GEMMs with every
set: AVX512-VNNI (not under SEQENC_ISA=avx2), AVX-VNNI, or vpmaddubsw on 7-bit weights on
AVX2-only CPUs (int8.LEVELS).
Every function below takes an ``isa`` to force a set (tests run each set the CPU has).

This module is the kernel sets, the layout checks our kernels share, the elementwise and
attention kernels with their error bounds, the float32 GEMM and the fused post-norm layer that
composes them; the GEMMs with their own packed weights and epilogues have modules of their own
(gemm_bf16.py, gemm_f32.py; int8 in seqenc/int8*.py), which import this one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

try:
    from seqenc import _kernels
except ImportError:  # built without a C compiler, or not on x86-64
    _kernels = None

ENABLED = (_kernels is not None and _kernels.supported()
           and os.environ.get("SEQENC_KERNELS", "1") != "0")
ISAS = ("avx2", "avx512", "avx512bf16", "amx")  # in order: each includes the one before
_BEST = _kernels.best_isa() if _kernels is not None else -1
AVAILABLE = ISAS[:_BEST + 1]  # the sets this CPU can run
_cap = os.environ.get("SEQENC_ISA", "")
ISA = (min(_cap, AVAILABLE[-1], key=ISAS.index) if _cap in ISAS else AVAILABLE[-1]
       ) if AVAILABLE else ""
_DTYPES = {torch.float32: 0, torch.bfloat16: 1}

# bfloat16 outputs: the float32 result's bound plus one rounding to nearest even at 8
# significant bits, |error| <= BF16_ROUNDING |result| (half an ulp), on every kernel above.
BF16_ROUNDING = 2.0 ** -8
last_lanes = 0  # 256 or 512: which implementation the last elementwise or attention call ran


def lanes(isa: str, dtype: torch.dtype, width: int) -> int:
    """Which implementation runs (isa, dtype, width): 512 (AVX-512), 256 (AVX2) or 0 (none)."""
    level = ISAS.index(isa)
    if dtype == torch.bfloat16:
        return 512 if level >= 2 and width % 16 == 0 else 0
    if dtype != torch.float32 or width % 8:
        return 0
    return 512 if level >= 1 and width % 16 == 0 else 256


def supports_bf16() -> bool:
    """Whether the fused path takes bf16 tensors on this CPU (AVX512-BF16 kernel set)."""
    return ENABLED and ISAS.index(ISA) >= 2 if ISA else False

# Error bounds against the exact (float64) operation on the same float32 inputs, held by
# tests/nn/test_kernels.py on whichever CPU runs them. eps = 2**-24 (float32).
#   bias_gelu_:      |ours - gelu(v)| <= GELU_RELATIVE_ERROR |gelu(v)| + 1e-36, v = x + bias
#                    in float32 (relative everywhere, the left tail included: see elementwise.c)
#   add_layer_norm_: |ours - LN(y + b + r)| <= LAYER_NORM_ERROR (|gamma| (1 + |xhat|) + |beta|),
#                    xhat the exact normalised value, for widths up to 4096
#   varlen_attention: |ours - attention| <= max|v| (ATTENTION_ERROR[0] + ATTENTION_ERROR[1] S),
#                    S = max over query/key pairs of sum_d |q_d k_d| / sqrt(hd): a score's rounding
#                    error grows with its unsigned size and moves the softmax weights by as much
GELU_RELATIVE_ERROR = 1e-6
# The GELU of rows quantised to int8 next (the int8 up projection's epilogue on amx/vnni512, and
# bias_gelu_(for_int8=True) on 16 lanes; csrc/simd512.h's gelu512_for_int8, a table of cubics):
# |ours - gelu(v)| <= GELU_INT8_ERROR + 2**-23 |gelu(v)|. Absolute: the quantisation that follows
# rounds each row to steps of max|row| / 127 (MiniLM's GELU rows reach max|row| >= 1, a step of
# >= 8e-3: this is under 0.2% of one).
GELU_INT8_ERROR = 1.5e-5
LAYER_NORM_ERROR = 1e-5
ATTENTION_ERROR = (1e-6, 4 * 2.0**-24)


def describe() -> str:
    """Which kernels run here, in words (for logs, `seqenc info` and test reports)."""
    if _kernels is None:
        return "PyTorch only (seqenc._kernels not built)"
    if not _kernels.supported():
        return "PyTorch only (this CPU lacks AVX2 + FMA)"
    if not ENABLED:
        return "PyTorch only (SEQENC_KERNELS=0)"
    names = {"avx2": "AVX2 + FMA", "avx512": "AVX-512",
             "avx512bf16": "AVX-512 + AVX512-BF16", "amx": "AVX-512 + AVX512-BF16 + AMX-BF16"}
    capped = f", capped by SEQENC_ISA (CPU has {AVAILABLE[-1]})" if ISA != AVAILABLE[-1] else ""
    from ..threads import openmp_waits  # said when seqenc's cap on OpenMP's spin did not apply

    late = ("; OpenMP spin not capped (torch imported before seqenc)"
            if openmp_waits().startswith("NOT") else "")
    return f"seqenc C kernels, {ISA}: {names[ISA]}{capped}{late}"


def can_attend(qkv: Tensor, n_heads: int) -> bool:
    """Whether varlen_attention takes this (N, 3D) projection."""
    return (can_attend_shape(qkv.dtype, qkv.shape[-1] // (3 * n_heads))
            and qkv.device.type == "cpu" and not qkv.requires_grad)


def can_attend_shape(dtype: torch.dtype, head_dim: int) -> bool:
    """Whether varlen_attention runs for this dtype and head size (the plan asks once):
    float32, or bfloat16 where the avx512bf16 set runs the layers around it."""
    return ENABLED and head_dim % 8 == 0 and (
        dtype == torch.float32 or dtype == torch.bfloat16 and supports_bf16())


def varlen_attention(qkv: Tensor, starts: Tensor, lengths: Tensor, n_heads: int,
                     bias: Tensor | None = None, out_dtype: torch.dtype | None = None,
                     isa: str | None = None) -> Tensor:
    """softmax(Q K^T / sqrt(hd)) V within each sequence of a packed batch.

    qkv (N, 3D): rows starts[i] .. starts[i] + lengths[i] are sequence i, columns q | k | v
    with heads of hd = D / n_heads inside each. starts, lengths: (S,) int64. -> (N, D).
    ``bias`` (3D,) is the projection's bias when qkv comes without it (saves a pass over qkv):
    the kernel adds the query part, and the value part to the output; the key part cannot
    change the result (it shifts each row of scores by a constant). Computed in float32 for
    either dtype: a bfloat16 qkv is read as float32 as it is loaded, and a bfloat16 output
    (``out_dtype``, default qkv's) rounded to nearest even once as it is stored, so no
    conversion pass is needed on either side (a float32 qkv with a bf16 output feeds a bf16
    GEMM directly). ``isa`` (default ``ISA``) picks the kernel: 16 lanes on the AVX-512 sets
    where hd % 16 == 0, 8 lanes otherwise (``last_lanes`` says which ran).
    """
    global last_lanes
    qkv = qkv.contiguous()
    starts, lengths = starts.to(torch.long).contiguous(), lengths.to(torch.long).contiguous()
    if starts.shape != lengths.shape or starts.dim() != 1 or starts.device.type != "cpu":
        raise ValueError("starts and lengths must be two (S,) CPU tensors")
    isa = isa or ISA
    if isa not in AVAILABLE:
        raise ValueError(f"kernel set {isa!r} is not available on this CPU ({AVAILABLE})")
    out_dtype = out_dtype or qkv.dtype
    if out_dtype not in _DTYPES:
        raise ValueError(f"attention writes float32 or bfloat16, not {out_dtype}")
    N, three_d = qkv.shape
    D = three_d // 3
    head_dim = D // n_heads
    out = torch.empty(N, D, dtype=out_dtype)
    if bias is None:
        bias = torch.zeros(three_d, dtype=qkv.dtype)
    _check_rows(qkv, bias)
    bias = bias.float()  # the kernel reads float32 biases for either dtype (3D values)
    q_bias, v_bias = bias[:D].contiguous(), bias[2 * D:].contiguous()
    last_lanes = _kernels.attention(
        qkv.data_ptr(), q_bias.data_ptr(), v_bias.data_ptr(), out.data_ptr(),
        starts.data_ptr(), lengths.data_ptr(),  # spans checked in C
        len(lengths), N, n_heads, head_dim, 1.0 / math.sqrt(head_dim),
        torch.get_num_threads(), qkv.dtype == torch.bfloat16, out_dtype == torch.bfloat16,
        ISAS.index(isa))
    return out


def bias_gelu_(x: Tensor, bias: Tensor, isa: str | None = None,
               for_int8: bool = False) -> Tensor:
    """x = gelu(x + bias) in place (the exact erf form, as F.gelu). x (N, F) contiguous,
    float32 (or bfloat16 with the avx512bf16 set). ``for_int8``: rows quantised to int8 next
    (the int8 GEMMs' GELU, within GELU_INT8_ERROR) where 16 lanes run on float32 rows."""
    global last_lanes
    isa = _isa(isa, x, bias)
    last_lanes = _kernels.bias_gelu(x.data_ptr(), bias.data_ptr(), x.shape[0], x.shape[1],
                                    torch.get_num_threads(), ISAS.index(isa), _DTYPES[x.dtype],
                                    for_int8)
    return x


def add_layer_norm_(y: Tensor, bias: Tensor, residual: Tensor, weight: Tensor,
                    norm_bias: Tensor, eps: float, isa: str | None = None,
                    copy_bf16: Tensor | None = None) -> Tensor:
    """y = LayerNorm(y + bias + residual) * weight + norm_bias in place: a sub-layer's output
    bias, the residual connection and the post-norm LayerNorm in one pass. y, residual (N, D)
    contiguous; bias, weight, norm_bias (D,); all of one dtype (float32, or bfloat16 with the
    avx512bf16 set). ``copy_bf16`` (N, D) bf16, for float32 y: also gets the result rounded to
    bf16 as it is stored (a bf16 GEMM's input, no conversion pass; avx512bf16, D % 16 == 0)."""
    global last_lanes
    isa = _isa(isa, y, bias, weight, norm_bias)
    _check_rows(residual)
    if residual.shape != y.shape or residual.dtype != y.dtype:
        raise ValueError(f"residual {tuple(residual.shape)} {residual.dtype} does not match "
                         f"{tuple(y.shape)} {y.dtype}")
    copy = 0
    if copy_bf16 is not None:
        _check_bf16_output(y, bias, isa)
        if (copy_bf16.shape != y.shape or copy_bf16.dtype != torch.bfloat16
                or not copy_bf16.is_contiguous()):
            raise ValueError(f"copy_bf16 must be a contiguous bfloat16 {tuple(y.shape)} tensor")
        copy = copy_bf16.data_ptr()
    last_lanes = _kernels.add_layernorm(
        y.data_ptr(), bias.data_ptr(), residual.data_ptr(), weight.data_ptr(),
        norm_bias.data_ptr(), eps, y.shape[0], y.shape[1], torch.get_num_threads(),
        ISAS.index(isa), _DTYPES[y.dtype], copy)
    return y


def _check_bf16_output(x: Tensor, bias: Tensor, isa: str | None = None) -> None:
    """The epilogues write a bf16 result for float32 rows on the avx512bf16 set (and amx)."""
    _check_rows(x, bias)
    if x.dtype != torch.float32 or ISAS.index(isa or ISA) < 2 or x.shape[1] % 16:
        raise ValueError(f"a bf16 result needs float32 rows of a width divisible by 16 and the "
                         f"avx512bf16 kernel set: got {x.dtype} width {x.shape[1]}, "
                         f"set {isa or ISA!r}")


def _isa(isa: str | None, x: Tensor, *vectors: Tensor) -> str:
    """Check the layout and pick the kernel set (default ``ISA``) that can run it."""
    _check_rows(x, *vectors)
    isa = isa or ISA
    if isa not in AVAILABLE:
        raise ValueError(f"kernel set {isa!r} is not available on this CPU ({AVAILABLE})")
    if not lanes(isa, x.dtype, x.shape[1]):
        raise ValueError(f"no {isa} kernel for {x.dtype} rows of width {x.shape[1]} "
                         "(bfloat16 needs avx512bf16 and a width divisible by 16)")
    return isa


def _check_rows(x: Tensor, *vectors: Tensor) -> None:
    """Our kernels take raw pointers: refuse anything but the layout they assume."""
    if (x.dim() != 2 or not x.is_contiguous() or x.dtype not in _DTYPES
            or x.device.type != "cpu"):
        raise ValueError("expected a contiguous float32 or bfloat16 (rows, width) CPU tensor")
    if x.shape[1] % 8:
        raise ValueError(f"width {x.shape[1]} is not a multiple of 8")
    for v in vectors:
        if v.shape != (x.shape[1],) or not v.is_contiguous() or v.dtype != x.dtype:
            raise ValueError(f"expected a contiguous {x.dtype} vector of {x.shape[1]}")


def can_fuse(*, dtype: torch.dtype, norm: str, activation: str, feed_forward: str, bias: bool,
             rotary: bool, d_model: int, n_heads: int, d_ff: int) -> bool:
    """Whether fused_post_norm_layer computes a layer of this shape and dtype: BERT-style
    (post-norm, erf GELU, plain MLP, every bias, no rotary) with widths our kernels take:
    float32 (encode's bf16 and int8 copies included: their Bf16Linear and Int8Linear layers take
    float32 rows to our GEMMs), or bfloat16 tensors (an encoder cast to bf16) on the avx512bf16
    set with widths divisible by 16 (its epilogues' one condition; those GEMMs are PyTorch's
    bf16 matmuls). The caller (the plan) has checked the rest: CPU, inference, varlen
    attention."""
    layer = (ENABLED and norm == "post" and activation == "gelu" and feed_forward == "mlp"
             and bias and not rotary and d_model % (8 * n_heads) == 0)
    if dtype == torch.bfloat16:
        return layer and supports_bf16() and d_model % 16 == 0 and d_ff % 16 == 0
    return layer and dtype == torch.float32 and d_ff % 8 == 0


class PostNormWeights(NamedTuple):
    """The tensors of one BERT-style layer, in the order the fused layer uses them. A weight
    may also be a module with ``matmul(x) -> x W^T`` (seqenc.int8.Int8Linear: int8 weights)."""

    qkv_weight: Tensor  # (3D, D)
    qkv_bias: Tensor  # (3D,)
    out_weight: Tensor  # (D, D)
    out_bias: Tensor  # (D,)
    norm1_weight: Tensor  # (D,)
    norm1_bias: Tensor  # (D,)
    up_weight: Tensor  # (F, D)
    up_bias: Tensor  # (F,)
    down_weight: Tensor  # (D, F)
    down_bias: Tensor  # (D,)
    norm2_weight: Tensor  # (D,)
    norm2_bias: Tensor  # (D,)


def fused_post_norm_layer(x: Tensor, starts: Tensor, lengths: Tensor, n_heads: int, eps: float,
                          w: PostNormWeights) -> Tensor:
    """A post-norm BERT layer at inference with our kernels: x (N, D) packed rows, sequence i
    at rows starts[i] .. starts[i] + lengths[i] -> (N, D).

        a = LN1(x + Attention(x))            varlen_attention, then out-proj + add_layer_norm_
        y = LN2(a + W2 gelu(W1 a + b1) + b2) bias_gelu_, then add_layer_norm_
    The matmuls (``matmul``) by weight: float32 tensors, ours (nn/gemm_f32.py's with the
    epilogues inside: gemm_f32 on AVX-512 CPUs, the avx2 set's; SEQENC_F32_GEMM=mkl: gemm_f32
    alone on AVX-512 CPUs, PyTorch's on the avx2 set);
    precision.Bf16Linear, our bf16 GEMM (nn/gemm_bf16.py: bf16 inputs, float32 out);
    int8.Int8Linear, our csrc/gemm_int8.c kernels (AVX512-VNNI, AVX-VNNI or AVX2's
    vpmaddubsw; torch._int_mm with those off or for widths they do not take), and
    int8_layer.post_norm_layer runs the whole layer where int8_layer.fuses_layer says so;
    bf16 tensors (an encoder cast to bf16), PyTorch's bf16 matmuls. The elementwise work
    around them is fused into them. In bfloat16 every step's output is
    rounded to bf16 once (the GEMMs' and each kernel's), as PyTorch's bf16 ops round theirs.
    With Bf16Linear weights (bf16 inputs, float32 everywhere else) the kernel before each of
    the out, up and down GEMMs also rounds its float32 result to bf16 as it stores it (the same
    rounding the GEMM would apply to its input), so no conversion pass runs between them, and
    bias + GELU run in the up GEMM's epilogue (its float32 (N, F) output is never stored);
    builds whose bf16 GEMMs take the LayerNorms run them there too (gemm_bf16.post_norm_layer).
    """
    x = x.contiguous()
    from seqenc import int8, int8_layer  # int8 layers: the steps after each GEMM inside it

    # our GEMMs with the epilogues inside, float32 and bf16 (aliased: this module's gemm_f32 is
    # the bare AVX-512 GEMM)
    from . import gemm_bf16
    from . import gemm_f32 as fused_f32

    if x.dtype == torch.float32 and int8_layer.fuses_layer(w):
        return int8_layer.post_norm_layer(x, starts, lengths, n_heads, eps, w)
    if fused_f32.fuses_layer(x, w):
        return fused_f32.post_norm_layer(x, starts, lengths, n_heads, eps, w)
    if gemm_bf16.fuses_layer(x, w):  # Bf16Linear: the LayerNorms in the GEMMs' epilogues
        return gemm_bf16.post_norm_layer(x, starts, lengths, n_heads, eps, w)
    bf16_rows = x.dtype == torch.float32 and all(
        getattr(m, "takes_bf16_rows", lambda: False)()
        for m in (w.out_weight, w.up_weight, w.down_weight))
    rows_dtype = torch.bfloat16 if bf16_rows else None
    qkv = matmul(x, w.qkv_weight)  # (N, 3D); the kernel adds the bias
    context = varlen_attention(qkv, starts, lengths, n_heads, w.qkv_bias, rows_dtype)
    a16 = torch.empty(x.shape, dtype=torch.bfloat16) if bf16_rows else None
    a = add_layer_norm_(matmul(context, w.out_weight), w.out_bias, x,
                        w.norm1_weight, w.norm1_bias, eps, copy_bf16=a16)  # (N, D)
    if bf16_rows:  # bias + GELU in the up GEMM's epilogue, bf16 out
        hidden = w.up_weight.matmul_gelu(a16, w.up_bias)  # (N, F) bf16
    else:
        # (N, F); rows quantised to int8 next: the GELU of the int8 GEMMs' epilogues
        hidden = bias_gelu_(matmul(a, w.up_weight), w.up_bias,
                            for_int8=int8.gelu_for_int8(w))
    return add_layer_norm_(matmul(hidden, w.down_weight), w.down_bias, a,
                           w.norm2_weight, w.norm2_bias, eps)  # (N, D)


# gemm_f32.c: float32 with AVX-512 FMAs (MKL's sgemm runs its AVX2 code on the AMD CPUs here,
# at half the cores' 512-bit FMA rate). The bound against float64 is a float32 dot product's:
# |ours - exact| <= GEMM_F32_ERROR K sum_k |a_k w_k| + 1e-30.
GEMM_F32_ERROR = 2.0 ** -24


def can_gemm_f32(k: int, m: int) -> bool:
    """Whether gemm_f32 runs here for inner width k and output width m (avx512 and up)."""
    return (ENABLED and ISAS.index(ISA) >= 1 and m % 16 == 0 and k > 0
            and _has("gemm_f32"))


def _has(name: str) -> bool:
    """Whether the built extension has this kernel: a checkout pulled past a C change without
    rebuilding (`make setup`) keeps an older _kernels; it then runs PyTorch's GEMMs instead."""
    return hasattr(_kernels, name)


def check_f32_gemm(name: str, x: Tensor, weight: Tensor, can: Callable[[int, int], bool],
                   where: str) -> tuple[int, int, int]:
    """(N, K, M) for one of our float32 GEMMs' operands: x (N, K) rows and a contiguous
    float32 (M, K) CPU weight that ``can(K, M)`` takes; else a ValueError naming ``name``."""
    _check_rows(x)
    N, K = x.shape
    M = weight.shape[0]
    if (x.dtype != torch.float32 or weight.dtype != torch.float32 or weight.shape != (M, K)
            or not weight.is_contiguous() or weight.device.type != "cpu" or not can(K, M)):
        raise ValueError(f"{name} takes float32 (N, K) rows and a contiguous float32 (M, K) "
                         f"weight, M divisible by 16, on {where}: got {x.dtype} ({N}, {K}), "
                         f"{weight.dtype} {tuple(weight.shape)}, set {ISA!r}")
    return N, K, M


def gemm_f32(x: Tensor, weight: Tensor) -> Tensor:
    """x W^T for x (N, K) and W (M, K), both float32: (N, M) float32. W is read as it is
    (no packed copy to go stale when an optimizer changes it in place)."""
    N, K, M = check_f32_gemm("gemm_f32", x, weight, can_gemm_f32, "an AVX-512 kernel set")
    out = torch.empty(N, M)
    _kernels.gemm_f32(x.data_ptr(), weight.data_ptr(), out.data_ptr(), N, M, K, M,
                      torch.get_num_threads())
    return out


def matmul(x: Tensor, weight) -> Tensor:
    """x W^T without the bias: (N, K) -> (N, M) contiguous. ``weight`` is an (M, K) tensor, or
    a module whose ``matmul`` computes it (int8.Int8Linear, precision.Bf16Linear: float32
    out)."""
    if isinstance(weight, Tensor):
        if (weight.dtype == torch.float32 and x.dtype == torch.float32 and x.shape[1] % 8 == 0
                and weight.is_contiguous() and can_gemm_f32(weight.shape[1], weight.shape[0])):
            return gemm_f32(x.contiguous(), weight)
        return torch.mm(x, weight.t())
    return weight.matmul(x)
